//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations as they are registered (utoipa-actix-web), so a route cannot
//! be served without being documented, and a small self-contained reference
//! page that renders it (Swagger UI would need a download at build time).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The serialized document, shared by the `openapi.json` handler.
pub struct OpenApiJson(pub String);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GPU usage accounting API",
        description = "Minute, hourly and daily GPU usage statistics per scope (global, endpoint, spec), \
raw usage records, ingest, worker capacity (sessions and heartbeats), and recomputation triggers.\n\n\
Times are RFC 3339; responses are in UTC with a `Z`. Ranges are half-open `[start_time, end_time)`. \
Every quantity is a JSON number. Errors are `{\"error\": \"...\", \"code\": \"...\"}`.\n\n\
Auth: `Authorization: Bearer <token>`. Roles nest: read < ingest < admin. Reads may be open to \
anonymous callers (`api.public_reads`). With no token configured at all (local first run on a \
loopback address only) every endpoint is open."
    ),
    modifiers(&BearerAuth),
    // What most operations take: a bearer token, or none where reads are
    // public. Writes and triggers require the token, and probes, the
    // dashboard and this documentation take none; those say so themselves.
    security((), ("bearer" = [])),
    tags(
        (name = "statistics", description = "Rolled-up usage per minute, hour and UTC day"),
        (name = "records", description = "Raw finished-task usage records"),
        (name = "capacity", description = "Worker sessions and heartbeats: the GPUs workers made available"),
        (name = "triggers", description = "Recomputation on demand (admin)"),
        (name = "system", description = "Probes, engine status, this documentation"),
    )
)]
struct BaseDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from the API configuration"))
                    .build(),
            ),
        );
    }
}

pub fn base() -> utoipa::openapi::OpenApi {
    BaseDoc::openapi()
}

/// Renders any OpenAPI 3 document fetched from `openapi.json` next to it.
pub const REFERENCE_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GPU usage API reference</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f7f8fa; }
  main { max-width: 980px; margin: 0 auto; padding: 24px; }
  h1 { margin-bottom: 4px; }
  .desc { white-space: pre-wrap; color: #444; }
  section.op { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; margin: 14px 0; padding: 12px 16px; }
  .method { display: inline-block; min-width: 56px; text-align: center; font-weight: 700; color: #fff;
            border-radius: 4px; padding: 1px 8px; margin-right: 8px; font-size: 13px; }
  .get { background: #2f7d32; } .post { background: #1f5fa8; } .put, .patch { background: #a86b1f; } .delete { background: #a82a1f; }
  code, .path { font-family: ui-monospace, monospace; }
  .path { font-weight: 600; }
  table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 14px; }
  th, td { text-align: left; border-bottom: 1px solid #eceff3; padding: 4px 6px; vertical-align: top; }
  th { color: #555; font-weight: 600; }
  .tag { margin-top: 30px; border-bottom: 2px solid #dde1e8; }
  .muted { color: #777; }
  a { color: #1f5fa8; }
</style>
</head>
<body>
<main>
  <h1 id="title">GPU usage API</h1>
  <div class="muted" id="version"></div>
  <p class="desc" id="description"></p>
  <p>Machine-readable document: <a href="openapi.json">openapi.json</a></p>
  <div id="ops"><p class="muted">Loading…</p></div>
  <h2 class="tag">Schemas</h2>
  <div id="schemas"></div>
</main>
<script>
"use strict";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const refName = (r) => r.split("/").pop();
// Doc comments arrive hard-wrapped: join lines, keep paragraph breaks.
const prose = (s) => esc(String(s ?? "").replace(/([^\n])\n(?!\n)/g, "$1 "));
function typeOf(s) {
  if (!s) return "";
  if (s.$ref) { const n = refName(s.$ref); return `<a href="#schema-${esc(n)}">${esc(n)}</a>`; }
  if (s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(typeOf).join(" | ");
  if (s.allOf) return s.allOf.map(typeOf).join(" & ");
  let t = Array.isArray(s.type) ? s.type.join(" | ") : (s.type || "any");
  if (s.type === "array" || (Array.isArray(s.type) && s.type.includes("array"))) t = `array of ${typeOf(s.items)}`;
  if (s.format) t += ` (${esc(s.format)})`;
  if (s.enum) t += `: ${s.enum.map((v) => `<code>${esc(v)}</code>`).join(", ")}`;
  return t;
}
// A schema's fields with those of the schemas it is composed of (allOf),
// so a row that nests another type still shows every field.
function fields(s, schemas, seen = new Set()) {
  if (!s) return [{}, []];
  if (s.$ref) {
    const n = refName(s.$ref);
    if (seen.has(n)) return [{}, []];
    return fields(schemas[n], schemas, new Set([...seen, n]));
  }
  const parts = (s.allOf || []).map((p) => fields(p, schemas, seen));
  const properties = Object.assign({}, ...parts.map(([p]) => p), s.properties || {});
  return [properties, [...parts.flatMap(([, r]) => r), ...(s.required || [])]];
}
function props(s, schemas) {
  const [properties, required] = fields(s, schemas);
  if (!Object.keys(properties).length) return "";
  const req = new Set(required);
  const rows = Object.entries(properties).map(([k, v]) =>
    `<tr><td><code>${esc(k)}</code>${req.has(k) ? "" : ' <span class="muted">optional</span>'}</td><td>${typeOf(v)}</td><td>${prose(v.description)}</td></tr>`);
  return `<table><tr><th>field</th><th>type</th><th>description</th></tr>${rows.join("")}</table>`;
}
function content(c) {
  if (!c) return "";
  return Object.entries(c).map(([mt, m]) => `<code>${esc(mt)}</code> ${typeOf(m.schema)}`).join("<br>");
}
function operation(path, method, op, defaultSecurity) {
  const params = (op.parameters || []).map((p) =>
    `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required ? "yes" : "no"}</td><td>${typeOf(p.schema)}</td><td>${prose(p.description)}</td></tr>`).join("");
  const responses = Object.entries(op.responses || {}).map(([code, r]) =>
    `<tr><td><b>${esc(code)}</b></td><td>${esc(r.description)}</td><td>${content(r.content)}</td></tr>`).join("");
  // An operation without its own requirements has the document's.
  const security = op.security ?? defaultSecurity ?? [];
  const sec = security.length ? security.map((s) => Object.keys(s).length ? Object.keys(s).join(", ") : "anonymous").join(" or ") : "none";
  const body = op.requestBody ? `<h4>Request body</h4><p>${esc(op.requestBody.description)}</p><p>${content(op.requestBody.content)}</p>` : "";
  return `<section class="op" id="${esc(method + path)}">
    <div><span class="method ${esc(method)}">${esc(method.toUpperCase())}</span><span class="path">${esc(path)}</span></div>
    <p class="desc">${prose(op.summary)}${op.description ? "\n\n" + prose(op.description) : ""}</p>
    <div class="muted">Auth: ${esc(sec)}</div>
    ${params ? `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>type</th><th>description</th></tr>${params}</table>` : ""}
    ${body}
    <h4>Responses</h4><table><tr><th>status</th><th>description</th><th>content</th></tr>${responses}</table>
  </section>`;
}
fetch("openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("title").textContent = doc.info.title;
  document.getElementById("version").textContent = `version ${doc.info.version} · OpenAPI ${doc.openapi}`;
  document.getElementById("description").innerHTML = prose(doc.info.description);
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of ["get", "post", "put", "patch", "delete"]) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op, doc.security));
    }
  }
  const tagDesc = new Map((doc.tags || []).map((t) => [t.name, t.description]));
  // Sections in the document's tag order, untagged operations last.
  const order = [...tagDesc.keys(), ...[...byTag.keys()].filter((t) => !tagDesc.has(t))];
  document.getElementById("ops").innerHTML = order.filter((t) => byTag.has(t)).map((tag) => [tag, byTag.get(tag)]).map(([tag, ops]) =>
    `<h2 class="tag">${esc(tag)}</h2><p class="muted">${esc(tagDesc.get(tag))}</p>${ops.join("")}`).join("");
  const schemas = (doc.components && doc.components.schemas) || {};
  document.getElementById("schemas").innerHTML = Object.entries(schemas).sort().map(([name, s]) =>
    `<section class="op" id="schema-${esc(name)}"><div class="path">${esc(name)}</div><p class="desc">${prose(s.description)}</p>${props(s, schemas) || typeOf(s)}</section>`).join("");
}).catch((e) => {
  document.getElementById("ops").innerHTML = `<p>Could not load openapi.json: ${esc(e)}</p>`;
});
</script>
</body>
</html>
"##;

//! Declarations the crate makes many times, written once.

/// An enum stored as a string column and sent as the same string: the
/// variants and their spellings are declared once, and the enum gets the
/// SeaORM active-enum mapping, serde, OpenAPI (its values listed), `ALL`,
/// `as_str`, a letter-case-insensitive `from_text` and `Display`.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:tt ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            sea_orm::EnumIter,
            sea_orm::DeriveActiveEnum,
            utoipa::ToSchema,
        )]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[sea_orm(string_value = $text)]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; <[()]>::len(&[$(stored_enum!(@unit $variant)),+])] =
                [$($name::$variant),+];

            /// The stored and wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value spelled `s`, ignoring letter case and surrounding
            /// white space.
            pub fn from_text(s: &str) -> Option<$name> {
                let s = s.trim();
                $name::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@unit $variant:ident) => {
        ()
    };
}

//! Named choices: the library's option enums (architecture, pruning method, decision rule, ...)
//! spelled as on the command line and in JSON, without the library depending on a CLI parser.
//!
//! [`choices!`](crate::choices) implements [`Choice`], `Display` and `FromStr` for an enum from one
//! table of `Variant => "name": "help"`; the CLI turns any `Choice` into a clap value parser that
//! lists the names and their help.

/// An enum whose values have a name (the command-line and JSON spelling) and a one-line help.
pub trait Choice: Sized + Copy + Send + Sync + 'static {
    /// Every value, in the order they are listed.
    const ALL: &'static [Self];
    /// The spelling on the command line and in JSON.
    fn name(self) -> &'static str;
    /// One line on what the value means.
    fn help(self) -> &'static str;
    /// The value spelled `s`, if any.
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }
    /// The names, for error messages.
    fn names() -> String {
        Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}

/// Implements [`Choice`], `Display` and `FromStr` for an enum:
/// `choices!(Method { Imp => "imp": "iterative ...", Omp => "omp": "one-shot ..." });`
#[macro_export]
macro_rules! choices {
    ($t:ident { $($v:ident => $n:literal : $h:literal),+ $(,)? }) => {
        impl $crate::choice::Choice for $t {
            const ALL: &'static [Self] = &[$($t::$v),+];
            fn name(self) -> &'static str {
                match self { $($t::$v => $n),+ }
            }
            fn help(self) -> &'static str {
                match self { $($t::$v => $h),+ }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                <$t as $crate::choice::Choice>::from_name(s)
                    .ok_or_else(|| format!("`{s}`: expected one of {}", <$t as $crate::choice::Choice>::names()))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Choice;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fruit {
        Apple,
        BlueBerry,
    }
    crate::choices!(Fruit { Apple => "apple": "red", BlueBerry => "blue-berry": "small" });

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for f in Fruit::ALL {
            assert_eq!(f.name().parse::<Fruit>().unwrap(), *f);
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(Fruit::BlueBerry.help(), "small");
        let e = "pear".parse::<Fruit>().unwrap_err();
        assert!(e.contains("apple, blue-berry"), "{e}");
    }
}

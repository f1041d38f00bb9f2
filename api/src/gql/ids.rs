//! GraphQL `ID`s parsed into the domain's id types at the edge: an argument declared
//! `Id<GuildId>` is a guild id by the time a resolver sees it, and a malformed one is refused
//! before the resolver runs (`INVALID_INPUT`, saying what kind of id was expected). The
//! schema still says `ID` (the schema is built ignoring the name clash of these with the
//! built-in `ID`), so clients declare their variables as before.

use std::fmt::Display;
use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A domain id of type `T`, as the GraphQL `ID` a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Id<T>(pub T);

#[Scalar(name = "ID")]
impl<T> ScalarType for Id<T>
where
    T: FromStr + Display + Send + Sync,
    T::Err: Display,
{
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => text
                .parse()
                .map(Id)
                .map_err(|e| InputValueError::custom(format!("{text:?} is not a valid {}: {e}", kind::<T>()))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// The kind of id `T` is, in words (`guild id`), for refusals.
fn kind<T>() -> String {
    let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("id");
    let mut words = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.push(c.to_ascii_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use openguild_domain::{GuildId, MessageId};

    use super::*;

    #[test]
    fn ids_parse_into_their_domain_type_or_say_what_was_expected() {
        let g = GuildId::from_bytes([7; 16]);
        let parsed = <Id<GuildId> as ScalarType>::parse(Value::String(g.to_string())).unwrap();
        assert_eq!(parsed.0, g);
        let err = <Id<MessageId> as ScalarType>::parse(Value::String("nope".into())).unwrap_err();
        assert!(err.into_server_error(Default::default()).message.contains("not a valid event id"));
        assert!(<Id<GuildId> as ScalarType>::parse(Value::Number(3.into())).is_err());
    }
}

use crate::Error;

/// One parameter value from the experiment config.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
    /// An array of numbers.
    Floats(Vec<f64>),
    /// An array of strings.
    Texts(Vec<String>),
}

/// The plugin's parameters: the config's table for this plugin, flattened by the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, Value)>);

impl Params {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Refuses keys outside `known`, so a typo in a config is an error, not a silent default.
    pub fn only(&self, known: &[&str]) -> Result<(), Error> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(Error::invalid(format!("unknown parameter `{k}` (known: {})", known.join(", ")))),
            None => Ok(()),
        }
    }

    /// A number (integers are accepted), or `default` when unset.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Float(x)) => Ok(*x),
            Some(Value::Int(x)) => Ok(*x as f64),
            Some(v) => Err(Error::invalid(format!("parameter `{key}` must be a number, got {v:?}"))),
        }
    }

    /// A non-negative integer that fits in u32, or `default` when unset.
    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Int(x)) => u32::try_from(*x).map_err(|_| Error::invalid(format!("parameter `{key}` must be in 0..=4294967295, got {x}"))),
            Some(v) => Err(Error::invalid(format!("parameter `{key}` must be an integer, got {v:?}"))),
        }
    }

    /// A boolean, or `default` when unset.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(Error::invalid(format!("parameter `{key}` must be true or false, got {v:?}"))),
        }
    }

    /// A string, or `default` when unset.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Text(s)) => Ok(s),
            Some(v) => Err(Error::invalid(format!("parameter `{key}` must be a string, got {v:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params(vec![("dropout".into(), Value::Float(0.1)), ("heads".into(), Value::Int(4)), ("name".into(), Value::Text("x".into()))])
    }

    #[test]
    fn typed_getters_take_defaults_and_refuse_wrong_types() {
        let p = params();
        assert_eq!(p.f64_or("dropout", 0.0), Ok(0.1));
        assert_eq!(p.f64_or("heads", 0.0), Ok(4.0));
        assert_eq!(p.u32_or("heads", 1), Ok(4));
        assert_eq!(p.u32_or("missing", 7), Ok(7));
        assert_eq!(p.str_or("name", "y"), Ok("x"));
        assert!(matches!(p.u32_or("dropout", 1), Err(Error::InvalidInput(m)) if m.contains("`dropout` must be an integer")));
        assert!(p.bool_or("name", false).is_err());
        assert!(Params(vec![("n".into(), Value::Int(-1))]).u32_or("n", 0).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(params().only(&["dropout", "heads", "name"]).is_ok());
        let e = params().only(&["dropout", "heads"]).unwrap_err();
        assert!(e.to_string().contains("unknown parameter `name`"), "{e}");
    }
}

//! Reads a file (`what = "file"`), an env var (`what = "env"`) or the clock (`what = "clock"`)
//! when extracting. Without grants
//! the sandbox must stop it with CapabilityDenied; granted, it reads the variable or the clock.
use encore_sdk::extractor::{Extractor, Spec, Track};
use encore_sdk::{Error, Params};

struct Snoop {
    what: String,
    target: String,
}

impl Extractor for Snoop {
    fn configure(params: &Params) -> Result<(Self, Spec), Error> {
        let what = params.str_or("what", "file")?.to_string();
        let target = params.str_or("target", "/etc/passwd")?.to_string();
        Ok((Snoop { what, target }, Spec { name: "snoop".into(), dim: 1, wants_audio: None }))
    }

    fn extract(&mut self, _track: &Track, _audio: Option<&[f32]>) -> Result<Option<Vec<f32>>, Error> {
        let len = match self.what.as_str() {
            "file" => std::fs::read(&self.target).map(|b| b.len()).map_err(Error::internal)?,
            "env" => std::env::var(&self.target).map(|v| v.len()).map_err(Error::internal)?,
            "hashmap" => {
                let m: std::collections::HashMap<u32, u32> = (0..100).map(|i| (i, i * i)).collect();
                m[&9] as usize
            }
            "clock" => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(Error::internal)?;
                (now.as_secs() > 1_700_000_000) as usize
            }
            other => return Err(Error::invalid(format!("what = {other:?}"))),
        };
        Ok(Some(vec![len as f32]))
    }
}

encore_sdk::export_extractor!(Snoop);

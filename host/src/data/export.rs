//! `encore data export recbole`: RecBole atomic files, so RecBole runs on exactly our data.
//!
//! Writes `encore.inter` (every event: `session_id:token user_id:token item_id:token
//! timestamp:float completion:float`), `encore.item` (`item_id:token track_id:token
//! artist:token_seq title:token_seq plays:float`) and, for RecBole's `benchmark_filename`,
//! `encore.train.inter`, `encore.valid.inter`, `encore.test.inter` (the same columns, one line per
//! event of each split's rows, with the row index as `session_id`). Item and user tokens are the
//! dense indices of `items.parquet` and `users.parquet`. Tabs and newlines in names become spaces.
use super::schema::read_sessions;
use super::sessions::{Dataset, Sessions};
use std::io::Write;
use std::path::{Path, PathBuf};

const INTER_HEADER: &str = "session_id:token\tuser_id:token\titem_id:token\ttimestamp:float\tcompletion:float\n";

fn clean(s: &str) -> String {
    s.chars().map(|c| if c == '\t' || c == '\n' || c == '\r' { ' ' } else { c }).collect()
}

fn write_inter(path: &Path, s: &Sessions) -> anyhow::Result<()> {
    crate::io::write_atomic(path, |w| {
        w.write_all(INTER_HEADER.as_bytes())?;
        for i in 0..s.len() {
            for e in s.range(i) {
                let c = s.completion[e].map(|c| c.to_string()).unwrap_or_default();
                writeln!(w, "{i}\t{}\t{}\t{}\t{c}", s.user[i], s.item[e], s.ts[e])?;
            }
        }
        Ok(())
    })
}

/// Writes the atomic files of the dataset in `data_dir` into `out`; returns the files written.
pub fn recbole(data_dir: &Path, d: &Dataset, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let p = out.join("encore.inter");
    write_inter(&p, &d.sessions)?;
    written.push(p);
    let p = out.join("encore.item");
    crate::io::write_atomic(&p, |w| {
        w.write_all(b"item_id:token\ttrack_id:token\tartist:token_seq\ttitle:token_seq\tplays:float\n")?;
        for (i, it) in d.items.iter().enumerate() {
            writeln!(w, "{i}\t{}\t{}\t{}\t{}", clean(&it.track.id), clean(&it.track.artist), clean(&it.track.title), it.plays)?;
        }
        Ok(())
    })?;
    written.push(p);
    for split in ["train", "valid", "test"] {
        let src = data_dir.join(format!("{split}.parquet"));
        if src.exists() {
            let p = out.join(format!("encore.{split}.inter"));
            write_inter(&p, &read_sessions(&src)?)?;
            written.push(p);
        }
    }
    Ok(written)
}

//! `encore data export recbole`: RecBole atomic files, so RecBole runs on exactly our data.
//!
//! Writes `encore.inter` (every event: `session_id:token user_id:token item_id:token
//! timestamp:float completion:float`), `encore.item` (`item_id:token track_id:token
//! artist:token_seq title:token_seq plays:float`) and, for RecBole's `benchmark_filename: [train,
//! valid, test]`, `encore.train.inter`, `encore.valid.inter`, `encore.test.inter`. Item and user
//! tokens are the dense indices of `items.parquet` and `users.parquet`. Tabs and newlines in names
//! become spaces.
//!
//! The three benchmark parts hold **cases**, not events: RecBole 1.2.1's `SequentialDataset`
//! skips its own augmentation when `benchmark_filename` is set and reads every line as one
//! prepared sample (`item_id_list` the history, `item_id` the target), splitting the concatenated
//! files back by their line counts. So each part has one line per target, written the way
//! `SequenceData::from_splits` derives encore's cases: a training row gives a case at every
//! position after its first, a validation or test row one per position from `target_from`. The
//! parts are disjoint (each target event is in one), and a history holds only the items before the
//! target in its own row, so the parts never leak into one another.
use super::schema::read_split;
use super::sessions::{Dataset, Sessions};
use super::split::SplitRows;
use std::io::Write;
use std::path::{Path, PathBuf};

const INTER_HEADER: &str = "session_id:token\tuser_id:token\titem_id:token\ttimestamp:float\tcompletion:float\n";
const CASE_HEADER: &str = "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\tcompletion:float\n";
/// RecBole's default `MAX_ITEM_LIST_LENGTH`, and the default history kept per case.
pub const DEFAULT_MAX_HISTORY: usize = 50;

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

/// One benchmark part: a line per case of `r`, targets from each row's `target_from` (at least 1,
/// as a case needs a history). `max_history` keeps the last items of each history (0: all):
/// RecBole sizes its position embeddings by `MAX_ITEM_LIST_LENGTH` and does not cut benchmark
/// histories itself, and its `seq_len` option would keep the oldest items, not the newest.
fn write_cases(path: &Path, r: &SplitRows, max_history: usize) -> anyhow::Result<()> {
    crate::io::write_atomic(path, |w| {
        w.write_all(CASE_HEADER.as_bytes())?;
        for i in 0..r.len() {
            let (a, b) = (r.offsets[i] as usize, r.offsets[i + 1] as usize);
            for t in a + (r.target_from[i] as usize).max(1)..b {
                let from = if max_history == 0 { a } else { t.saturating_sub(max_history).max(a) };
                let history = r.item[from..t].iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ");
                let c = r.completion[t].map(|c| c.to_string()).unwrap_or_default();
                writeln!(w, "{}\t{history}\t{}\t{}\t{c}", r.user[i], r.item[t], r.ts[t])?;
            }
        }
        Ok(())
    })
}

/// Writes the atomic files of the dataset in `data_dir` into `out`, histories cut to their last
/// `max_history` items (0: whole); returns the files written.
pub fn recbole(data_dir: &Path, d: &Dataset, out: &Path, max_history: usize) -> anyhow::Result<Vec<PathBuf>> {
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
            write_cases(&p, &read_split(&src)?, max_history)?;
            written.push(p);
        }
    }
    Ok(written)
}

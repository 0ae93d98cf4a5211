"""The polars side of bench/ingest: the same rules as `encore data prepare --config configs/data/paper.toml`.

Reads the LastFM-1K TSV (no header, 6 columns), drops malformed rows, hashes empty track MBIDs from
the names (the hash function differs from encore's FNV-1a; only its role matters here), sorts by
(user, time), drops exact duplicates, keeps users with >= 1000 streams, tracks with >= 7 plays,
splits sessions at a 20-minute gap, drops consecutive repeats, keeps sessions with >= 10 tracks
truncated to 10, keeps users with >= 50 sessions, and writes sessions.parquet. Prints the counts.
"""
import sys
import time

import polars as pl

path, out = sys.argv[1], sys.argv[2]
t0 = time.time()
df = pl.read_csv(
    path,
    separator="\t",
    has_header=False,
    new_columns=["user", "ts", "artist_mbid", "artist", "track_mbid", "title"],
    schema_overrides={c: pl.Utf8 for c in ["user", "ts", "artist_mbid", "artist", "track_mbid", "title"]},
    quote_char=None,
    truncate_ragged_lines=True,
    encoding="utf8-lossy",
)
df = (
    df.lazy()
    .with_columns(pl.col("ts").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False).dt.epoch("s").alias("t"))
    .filter(pl.col("t").is_not_null() & pl.col("user").is_not_null())
    .with_columns(
        pl.when(pl.col("track_mbid").is_null())
        .then(pl.concat_str([pl.lit("h64:"), (pl.col("artist").fill_null("") + "\x1f" + pl.col("title").fill_null("")).hash().cast(pl.Utf8)]))
        .otherwise(pl.col("track_mbid"))
        .alias("track")
    )
    .select("user", "t", "track")
    .sort(["user", "t"], maintain_order=True)
    .unique(maintain_order=True)
    .filter(pl.len().over("user") >= 1000)
    .filter(pl.len().over("track") >= 7)
    .sort(["user", "t"], maintain_order=True)
    .with_columns(
        ((pl.col("t").diff().over("user").fill_null(10**9) > 1200)).cum_sum().over("user").alias("sess")
    )
    .filter((pl.col("track") != pl.col("track").shift(1).over(["user", "sess"])).fill_null(True))
    .with_columns(pl.len().over(["user", "sess"]).alias("slen"), pl.int_range(pl.len()).over(["user", "sess"]).alias("pos"))
    .filter((pl.col("slen") >= 10) & (pl.col("pos") < 10))
    .with_columns(pl.col("sess").n_unique().over("user").alias("nsess"))
    .filter(pl.col("nsess") >= 50)
    .group_by(["user", "sess"], maintain_order=True)
    .agg(pl.col("track"), pl.col("t"))
    .collect()
)
df.write_parquet(out)
n_events = df.select(pl.col("track").list.len().sum()).item()
print(f"polars: {df.height} sessions, {n_events} events, {df['user'].n_unique()} users in {time.time() - t0:.2f}s")

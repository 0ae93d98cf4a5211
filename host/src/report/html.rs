//! `report.html`: the grid's report as one self-contained page (inline CSS and SVG, no scripts,
//! nothing fetched), readable offline and attachable to a mail.
use super::plots::{self, Bars, Interval};
use super::table::{self, PaperTable, Verdict, FULL};
use super::GridReport;
use crate::results::ResultRow;
use std::fmt::Write;

/// Text made safe for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#111}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:.3em .6em;text-align:right}\
th{background:#eef2f7}th[scope=row]{text-align:left}td.empty{color:#999;text-align:center}\
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}\
strong.best{font-weight:700}td.best{background:#fff6d6}.change{color:#444}.sig-gain .change{color:#006d2c}\
.ns{color:#777;font-style:italic}.sig-loss .change,.loss{color:#b30000;font-weight:600}\
tr.baseline th,tr.baseline td{background:#f6f6f6}p.caption{color:#333;max-width:70em}\
figure{margin:1em 0}figcaption{color:#333}svg{max-width:100%;height:auto}code{background:#f2f2f2;padding:0 .2em}";

/// One paper table as HTML.
fn paper_table(out: &mut String, t: &PaperTable) {
    let name = format!("{}@{}", t.metric, t.k);
    let _ = writeln!(out, "<table class=\"paper\" data-protocol=\"{}\" data-metric=\"{}\">", escape(&t.protocol), escape(&name));
    let _ = writeln!(out, "<caption>{} ({})</caption>", escape(&name), escape(&protocol_name(&t.protocol)));
    let _ = write!(out, "<thead><tr><th scope=\"col\">LLM</th><th scope=\"col\">encoder</th>");
    for c in &t.columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(c));
    }
    let _ = writeln!(out, "</tr></thead><tbody>");
    for r in &t.rows {
        let _ = write!(
            out,
            "<tr{}><th scope=\"row\">{}</th><th scope=\"row\">{}</th>",
            if r.baseline { " class=\"baseline\"" } else { "" },
            escape(&r.llm),
            escape(&r.encoder)
        );
        for c in &r.cells {
            let Some(c) = c else {
                let _ = write!(out, "<td class=\"empty\">–</td>");
                continue;
            };
            let mut classes = Vec::new();
            if c.best {
                classes.push("best");
            }
            classes.push(match c.verdict {
                Verdict::Reference => "reference",
                Verdict::Gain => "sig-gain",
                Verdict::Loss => "sig-loss",
                Verdict::NotSignificant => "not-significant",
            });
            let value = if c.best { format!("<strong class=\"best\">{}</strong>", table::num(c.value)) } else { table::num(c.value) };
            let change = match (c.change, c.verdict) {
                (Some(ch), Verdict::NotSignificant) => format!(" <span class=\"change\">({})</span> <span class=\"ns\">n.s.</span>", table::percent(ch)),
                (Some(ch), Verdict::Loss) => format!(" <span class=\"change\">({})</span> <span class=\"loss\">sig. loss</span>", table::percent(ch)),
                (Some(ch), v) => format!(" <span class=\"change\">({}{})</span>", table::percent(ch), table::mark(v)),
                (None, Verdict::NotSignificant) => " <span class=\"ns\">n.s.</span>".into(),
                (None, _) => String::new(),
            };
            let _ = write!(out, "<td class=\"{}\">{value}{change}</td>", classes.join(" "));
        }
        let _ = writeln!(out, "</tr>");
    }
    let _ = writeln!(out, "</tbody></table>");
}

/// "full ranking over all items", or "the target among 199 sampled negatives".
pub(crate) fn protocol_name(p: &str) -> String {
    if p == FULL {
        "full ranking over all items".into()
    } else if let Some(n) = p.strip_prefix("1+") {
        format!("the target among {n} sampled negatives")
    } else {
        p.to_string()
    }
}

/// A plot inline, or the reason it is missing.
fn figure(out: &mut String, class: &str, metric: &str, svg: Result<String, plots::PlotError>, caption: &str) {
    let _ = writeln!(out, "<figure class=\"plot {class}\" data-metric=\"{}\">", escape(metric));
    match svg {
        // The document plotters wrote, without anything before its root element.
        Ok(s) => out.push_str(&s[s.find("<svg").unwrap_or(0)..]),
        Err(e) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", escape(&e.to_string()));
        }
    }
    let _ = writeln!(out, "<figcaption>{}</figcaption></figure>", escape(caption));
}

/// The whole page.
pub(crate) fn page(r: &GridReport) -> String {
    let rows = r.rows;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(r.title)
    );
    let _ = writeln!(out, "<h1>{}</h1>\n<p>Config: <code>{}</code>. {}</p>", escape(r.title), escape(r.config), escape(r.data));
    if !r.notes.is_empty() {
        let _ = writeln!(out, "<ul class=\"notes\">{}</ul>", r.notes.iter().map(|n| format!("<li>{}</li>", escape(n))).collect::<String>());
    }
    let protocols = table::protocols(rows);
    let reference = |t: &PaperTable| t.columns.get(t.reference).cloned().unwrap_or_else(|| "ID only".into());
    for p in &protocols {
        let tables: Vec<PaperTable> = table::metrics(rows, p).iter().map(|(m, k)| table::paper_table(rows, p, m, *k)).collect();
        let Some(first) = tables.first() else { continue };
        let _ = writeln!(out, "<section class=\"tables\" data-protocol=\"{}\"><h2>The paper's table: {}</h2>", escape(p), escape(&protocol_name(p)));
        let _ = writeln!(out, "<p class=\"caption\">{}</p>", escape(&table::caption(rows, &reference(first))));
        for t in &tables {
            paper_table(&mut out, t);
        }
        let _ = writeln!(out, "</section>");
    }
    let full_metrics = table::metrics(rows, FULL);
    if !full_metrics.is_empty() {
        let _ = writeln!(out, "<section class=\"intervals\"><h2>Every cell with its interval (full ranking)</h2>");
        for (m, k) in &full_metrics {
            let name = format!("{m}@{k}");
            let mut mine: Vec<&ResultRow> = rows.iter().filter(|x| x.protocol == FULL && &x.metric == m && x.k == *k).collect();
            // In the paper table's order: its rows (baselines last), then its columns, then seeds.
            let order = table::unique(mine.iter().map(|x| (table::is_baseline(x), &x.llm, &x.encoder)));
            let variants = table::unique(mine.iter().map(|x| &x.variant));
            mine.sort_by_key(|x| {
                let row = order.iter().position(|o| *o == (table::is_baseline(x), &x.llm, &x.encoder));
                let mut row = row.unwrap_or(0);
                if table::is_baseline(x) {
                    row += order.len();
                }
                (row, variants.iter().position(|v| *v == &x.variant), x.seed)
            });
            let lines: Vec<Interval> = mine
                .iter()
                .map(|x| Interval {
                    label: x.cell.clone(),
                    series: if table::is_baseline(x) { x.encoder.clone() } else { x.variant.clone() },
                    value: x.value,
                    ci: x.ci,
                })
                .collect();
            let svg = plots::intervals(&format!("{name}, full ranking"), &name, &lines);
            figure(
                &mut out,
                "ci",
                &name,
                svg,
                &format!(
                    "{name} of every cell: the dot is the mean over test cases, the whisker its bootstrap 95% interval over test cases; colour: the variant."
                ),
            );
        }
        let _ = writeln!(out, "</section>");
    }
    for (m, k) in &full_metrics {
        let name = format!("{m}@{k}");
        let mut opened = false;
        for (subset, what) in table::SUBSETS {
            let lines = table::subset_lines(rows, r.comparisons, subset, m, *k);
            let Some(n) = lines.first().map(|l| l.n_cases) else { continue };
            if !opened {
                let _ = writeln!(
                    out,
                    "<section class=\"subsets\" data-metric=\"{}\"><h2>Long tail and cold start: {} (full ranking)</h2>",
                    escape(&name),
                    escape(&name)
                );
                opened = true;
            }
            let points: Vec<Interval> = lines
                .iter()
                .map(|l| Interval {
                    label: format!("{}{}", l.label, if l.mark().is_empty() { "" } else { " " }) + l.mark(),
                    series: l.series.clone(),
                    value: l.value,
                    ci: l.ci,
                })
                .collect();
            let svg = plots::intervals(&format!("{name} on {subset} cases (n = {n})"), &name, &points);
            figure(
                &mut out,
                subset,
                &name,
                svg,
                &format!("{name} on the {n} {what}: the dot is the mean over those cases, the whisker its bootstrap 95% interval; after a label, * marks a gain over the same row's ID-only cell and \"sig. loss\" a loss (paired bootstrap, Holm-adjusted p < 0.05), n.s. neither."),
            );
        }
        if opened {
            let _ = writeln!(out, "</section>");
        }
    }
    for p in protocols.iter().filter(|p| *p != FULL) {
        let metrics: Vec<(String, u32)> = table::metrics(rows, p).into_iter().filter(|mk| full_metrics.contains(mk)).collect();
        if metrics.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<section class=\"sampled\" data-protocol=\"{}\"><h2>Full ranking against {}</h2>", escape(p), escape(p));
        let _ = writeln!(
            out,
            "<p class=\"caption\">The same cells scored by {} and with {} (means over seeds). The sampled protocol ranks far fewer items, so its numbers are higher; the table gives how many times higher (sampled ÷ full).</p>",
            escape(&protocol_name(FULL)),
            escape(&protocol_name(p))
        );
        let pairs: Vec<Vec<table::Pair>> = metrics.iter().map(|(m, k)| table::full_vs_sampled(rows, p, m, *k)).collect();
        for ((m, k), pairs) in metrics.iter().zip(&pairs) {
            let name = format!("{m}@{k}");
            let bars: Vec<Bars> = pairs.iter().map(|x| Bars { label: x.label(), first: x.full, second: x.sampled }).collect();
            let svg = plots::paired_bars(&format!("{name}: full ranking and {p}"), &name, ("full", p), &bars);
            figure(&mut out, "full-vs-sampled", &name, svg, &format!("{name} of every cell under full ranking (upper bar) and {p} (lower bar)."));
        }
        let _ = writeln!(
            out,
            "<table class=\"inflation\" data-protocol=\"{}\"><caption>{} ÷ full ranking</caption><thead><tr><th scope=\"col\">cell</th>",
            escape(p),
            escape(p)
        );
        for (m, k) in &metrics {
            let _ = write!(out, "<th scope=\"col\">{}@{k}</th>", escape(m));
        }
        let _ = writeln!(out, "</tr></thead><tbody>");
        let keys = table::unique(pairs.iter().flatten().map(|x| x.key.clone()));
        for key in keys {
            let _ = write!(out, "<tr><th scope=\"row\">{}</th>", escape(&table::label(&key.0, &key.1, &key.2)));
            for ps in &pairs {
                match ps.iter().find(|x| x.key == key).and_then(|x| x.inflation()) {
                    Some(f) => {
                        let _ = write!(out, "<td>{f:.2}×</td>");
                    }
                    None => out.push_str("<td class=\"empty\">–</td>"),
                }
            }
            let _ = writeln!(out, "</tr>");
        }
        let _ = writeln!(out, "</tbody></table></section>");
    }
    out.push_str("</body></html>\n");
    out
}

//! Formatting: error lines, times, progress bars, transcripts, summaries.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracker_store::{Event, EventKind, Tracker};

/// An error and its sources on one line.
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

/// The line reporting that conversation `id` failed: the error, after the conversation
/// unless the error names it first.
pub fn conversation_error(id: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let line = error_line(error);
    let name = format!("conversation {id:?}");
    if line.starts_with(&name) {
        line
    } else {
        format!("{name}: {line}")
    }
}

/// Epoch seconds as an ISO-8601 UTC time (`2023-11-14T22:13:20Z`).
pub fn iso_time(epoch_seconds: f64) -> String {
    if !epoch_seconds.is_finite() {
        return "-".to_owned();
    }
    let seconds = epoch_seconds.floor() as i64;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// Parses an age such as `30d`, `12h`, `90m`, `45s` or `2w`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h, d or w"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use s, m, h, d or w"
            ));
        }
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// A progress bar over `total` conversations, hidden when quiet or not on a terminal.
pub fn progress(total: u64, quiet: bool, what: &str) -> ProgressBar {
    progress_of(total, quiet, what, "conversations")
}

/// A progress bar over `total` `units` (conversations, events), hidden when quiet or not on
/// a terminal.
pub fn progress_of(total: u64, quiet: bool, what: &str, units: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {units} ({{per_sec}})"
    )) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Counts for the closing summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub conversations: u64,
    pub events: u64,
    pub failed: u64,
    /// Conversations left alone because they were written to after they were read.
    pub skipped: u64,
    pub started: Option<Instant>,
}

impl Summary {
    pub fn start() -> Self {
        Self {
            started: Some(Instant::now()),
            ..Self::default()
        }
    }

    /// Prints the summary to stderr unless quiet.
    pub fn print(&self, verb: &str, quiet: bool) {
        if quiet {
            return;
        }
        let elapsed = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        let seconds = elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{verb} {} conversations, {} events in {:.2}s ({:.0} events/s){}{}",
            self.conversations,
            self.events,
            elapsed.as_secs_f64(),
            self.events as f64 / seconds,
            if self.skipped > 0 {
                format!("; {} skipped: still live", self.skipped)
            } else {
                String::new()
            },
            if self.failed > 0 {
                format!("; {} conversations failed", self.failed)
            } else {
                String::new()
            }
        );
    }
}

/// A readable transcript of a tracker.
pub fn transcript(tracker: &Tracker) -> String {
    let mut out = format!("conversation {:?}\n", tracker.sender_id());
    for event in tracker.events() {
        let time = iso_time(event.timestamp);
        let line = match &event.kind {
            EventKind::UserUttered(user) => format!(
                "user: {}  [{}]",
                user.text.as_deref().unwrap_or(""),
                user.intent_name().unwrap_or("no intent")
            ),
            EventKind::BotUttered { text, .. } => {
                format!("bot:  {}", text.as_deref().unwrap_or(""))
            }
            EventKind::ActionExecuted {
                name: Some(name), ..
            } if name == "action_listen" => continue,
            EventKind::ActionExecuted {
                name, action_text, ..
            } => format!(
                "      action {}",
                name.as_deref().or(action_text.as_deref()).unwrap_or("?")
            ),
            EventKind::SlotSet { name, value } => format!("      slot {name} = {value}"),
            EventKind::SessionStarted => "----- session started -----".to_owned(),
            EventKind::Restarted => "----- restarted -----".to_owned(),
            EventKind::ActiveLoop { name: Some(name) } => format!("      form {name} active"),
            EventKind::ActiveLoop { name: None } => "      form done".to_owned(),
            _ => format!("      ({})", event.type_name()),
        };
        out.push_str(&format!("{time}  {line}\n"));
    }
    out
}

/// The timestamp of the last event, if any.
pub fn last_activity(events: &[Event]) -> Option<f64> {
    events.last().map(|event| event.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_700_000_000.9), "2023-11-14T22:13:20Z");
        assert_eq!(iso_time(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_age("30").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("3y").is_err());
    }
}

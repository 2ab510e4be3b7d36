//! Small value types shared by Istio's APIs: durations, percentages, selectors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Istio duration (`5s`, `1.5s`, `100ms`, `1h`, `2h45m`), as Go's `time.ParseDuration`
/// reads it. Never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{text}\": {reason}")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl Duration {
    /// A duration of `d`.
    pub const fn new(d: std::time::Duration) -> Self {
        Duration(d)
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let mut rest = text.trim();
        if let Some(stripped) = rest.strip_prefix('-') {
            if stripped
                .trim_start_matches(['0', '.', 's', 'm', 'h', 'u', 'n', 'µ'])
                .is_empty()
            {
                return Ok(Duration::default());
            }
            return Err(error("durations must not be negative"));
        }
        rest = rest.strip_prefix('+').unwrap_or(rest);
        if rest == "0" {
            return Ok(Duration::default());
        }
        if rest.is_empty() {
            return Err(error("empty"));
        }
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if number_len == 0 {
                return Err(error("expected a number"));
            }
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                "" => return Err(error("missing unit (one of ns, us, ms, s, m, h)")),
                _ => return Err(error("unknown unit (one of ns, us, ms, s, m, h)")),
            };
            let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
            if whole.is_empty() && fraction.is_empty() {
                return Err(error("expected a number"));
            }
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| error("number too large"))?
            };
            let mut nanos = whole
                .checked_mul(unit_nanos)
                .ok_or_else(|| error("number too large"))?;
            // Fractions are exact down to the nanosecond, as in Go.
            let mut scale = unit_nanos;
            for digit in fraction.chars() {
                let digit = u128::from(
                    digit
                        .to_digit(10)
                        .ok_or_else(|| error("expected a number"))?,
                );
                scale /= 10;
                nanos += digit * scale;
            }
            total_nanos = total_nanos
                .checked_add(nanos)
                .ok_or_else(|| error("number too large"))?;
            rest = after;
        }
        let secs =
            u64::try_from(total_nanos / 1_000_000_000).map_err(|_| error("number too large"))?;
        let nanos = (total_nanos % 1_000_000_000) as u32;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `1h`, `3m`, `5s`, `100ms`, `1.5s`, `1h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if !nanos.is_multiple_of(1_000_000_000) {
            if nanos < 1_000_000_000 {
                if nanos.is_multiple_of(1_000_000) {
                    return write!(f, "{}ms", nanos / 1_000_000);
                }
                if nanos.is_multiple_of(1_000) {
                    return write!(f, "{}us", nanos / 1_000);
                }
                return write!(f, "{nanos}ns");
            }
            let fraction = format!("{:09}", nanos % 1_000_000_000);
            return write!(
                f,
                "{}.{}s",
                nanos / 1_000_000_000,
                fraction.trim_end_matches('0')
            );
        }
        let secs = nanos / 1_000_000_000;
        let (hours, minutes, seconds) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds > 0 {
            write!(f, "{seconds}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A percentage, written `{value: 12.5}` (Istio's `Percent` message).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Percent {
    /// The percentage, 0–100.
    pub value: f64,
}

/// Labels selecting workloads: `{labels: {app: reviews}}` (Istio's `WorkloadSelector`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelector {
    /// The labels a workload must have, all of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Labels selecting workloads: `{matchLabels: {app: reviews}}` (Istio's type `WorkloadSelector`
/// in the security and telemetry APIs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabels {
    /// The labels a workload must have, all of them.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// A reference to the resource a policy attaches to (`targetRef` / `targetRefs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTargetReference {
    /// API group of the target (`""` for core, `gateway.networking.k8s.io`).
    #[serde(default)]
    pub group: String,
    /// Kind of the target (`Service`, `Gateway`, `ServiceEntry`, …).
    #[serde(default)]
    pub kind: String,
    /// Name of the target.
    #[serde(default)]
    pub name: String,
    /// Namespace of the target; only the policy's own is supported.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A port number, written `{number: 9080}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSelector {
    /// The port.
    #[serde(default)]
    pub number: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("5s", 5_000; "seconds")]
    #[test_case("1.5s", 1_500; "fractional seconds")]
    #[test_case("100ms", 100; "milliseconds")]
    #[test_case("1h", 3_600_000; "hours")]
    #[test_case("2h45m", 9_900_000; "compound")]
    #[test_case("3m", 180_000; "minutes")]
    #[test_case("0.5s", 500; "half a second")]
    #[test_case("0", 0; "bare zero")]
    fn parses_go_durations(text: &str, millis: u128) {
        let d: Duration = text.parse().unwrap();
        assert_eq!(d.get().as_millis(), millis);
    }

    #[test_case("apple"; "word")]
    #[test_case("5"; "no unit")]
    #[test_case("5d"; "unknown unit")]
    #[test_case("-5s"; "negative")]
    #[test_case(""; "empty")]
    fn rejects_bad_durations(text: &str) {
        assert!(text.parse::<Duration>().is_err());
    }

    #[test]
    fn prints_the_shortest_exact_form() {
        for text in ["1h", "3m", "5s", "100ms", "1.5s", "1h30m", "250us", "7ns"] {
            assert_eq!(text.parse::<Duration>().unwrap().to_string(), text);
        }
    }
}

//! Sizes and durations as people write them (`64K`, `2G`, `500ms`, `10m`) and as we print
//! them back (`20.0 MiB`): shared by the config file, the environment and the command line.

/// Bytes in binary units: `20.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Splits `"1.5G"` into `(1.5, "G")`; `what` names the expected kind in the error.
fn number_and_unit<'a>(s: &'a str, what: &str) -> Result<(f64, &'a str), String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value = num.parse().map_err(|_| format!("{s:?} is not a {what}"))?;
    Ok((value, unit.trim()))
}

/// Parses `4096`, `64K`, `10MiB`, `2G`, `1.5T` (binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(s, "size (try 4096, 64K, 10M, 2G)")?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    Ok((value * mult as f64) as u64)
}

/// Parses `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (value, unit) = number_and_unit(s, "duration (try 500ms, 30s, 10m, 2h)")?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a duration this program can wait"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("64K").unwrap(), 65536);
        assert_eq!(parse_bytes("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5Q").is_err());
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(parse_duration("soon").is_err());
        assert!(
            parse_duration("99999999999999999999999h").is_err(),
            "no overflow panic"
        );
        assert_eq!(human_bytes(20 << 20), "20.0 MiB");
    }
}

/// A time in milliseconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS` (what `ls`
/// prints; days to dates by Howard Hinnant's civil-from-days).
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn utc_time_matches_known_dates() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(super::utc_time(1_796_645_105_000), "2026-12-07 12:05:05");
    }
}

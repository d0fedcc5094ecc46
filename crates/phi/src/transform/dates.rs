//! Date parsing and re-rendering in the same format, for shifting dates by a fixed offset.

use time::{Date, Duration, Month};

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `value` shifted by `days`, in the same format; `None` if it cannot be read.
pub(crate) fn shift(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    // An ISO timestamp ("2021-03-04T10:22:31Z"): the date shifted, the time kept.
    if let Some((d, t)) = v.split_once('T') {
        if d.len() >= 8 && d.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'/' | b'-' | b'.'))
        {
            return Some(format!("{}T{t}", shift(d, days)?));
        }
    }
    // Numeric: m/d/y, m-d-y, y-m-d, m/d, m/y.
    if v.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'/' | b'-' | b'.')) {
        let sep = v.bytes().find(|c| !c.is_ascii_digit())? as char;
        let parts: Vec<&str> = v.split(sep).collect();
        let nums: Vec<i32> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
        return match nums.len() {
            3 if parts[0].len() == 4 => {
                let d = add(date(nums[0], nums[1], nums[2])?, days)?;
                Some(format!(
                    "{:04}{sep}{}{sep}{}",
                    d.year(),
                    pad(parts[1], d.month() as i32),
                    pad(parts[2], d.day() as i32)
                ))
            }
            3 => {
                let (year, short) = year_of(parts[2], nums[2]);
                let (m, dd, swapped) =
                    if nums[0] > 12 { (nums[1], nums[0], true) } else { (nums[0], nums[1], false) };
                let d = add(date(year, m, dd)?, days)?;
                let y = if short {
                    format!("{:02}", d.year() % 100)
                } else {
                    format!("{:04}", d.year())
                };
                let (a, b) = if swapped {
                    (d.day() as i32, d.month() as i32)
                } else {
                    (d.month() as i32, d.day() as i32)
                };
                Some(format!("{}{sep}{}{sep}{y}", pad(parts[0], a), pad(parts[1], b)))
            }
            2 if parts[1].len() == 4 => {
                let d = add(date(nums[1], nums[0], 15)?, days)?;
                Some(format!("{}{sep}{:04}", pad(parts[0], d.month() as i32), d.year()))
            }
            2 => {
                let d = add(date(2001, nums[0], nums[1])?, days)?;
                Some(format!(
                    "{}{sep}{}",
                    pad(parts[0], d.month() as i32),
                    pad(parts[1], d.day() as i32)
                ))
            }
            _ => None,
        };
    }
    textual(v, days)
}

/// "March 14th, 2021", "Mar 14", "14-Mar-2021", "15th of January 2022", "March 2021".
fn textual(v: &str, days: i64) -> Option<String> {
    let lower = v.to_ascii_lowercase();
    let (mi, mstart, mlen) = MONTHS.iter().enumerate().find_map(|(i, m)| {
        let full = lower.find(m).map(|p| (i, p, m.len()));
        full.or_else(|| {
            lower.find(&m[..3]).map(|p| {
                (
                    i,
                    p,
                    if m.len() > 3 && lower[p..].starts_with(&m[..4]) && &m[..4] == "sept" {
                        4
                    } else {
                        3
                    },
                )
            })
        })
    })?;
    let month_txt = &v[mstart..mstart + mlen];
    let digits: Vec<(usize, &str)> = number_runs(v);
    let mut day = None;
    let mut year = None;
    for &(pos, n) in &digits {
        if n.len() == 4 {
            year = Some((pos, n));
        } else if n.len() <= 2 && day.is_none() && !(n.len() == 2 && v[..pos].ends_with('\'')) {
            day = Some((pos, n));
        } else if n.len() == 2 {
            year = Some((pos, n));
        }
    }
    let y = year.map_or(Some(2001), |(_, n)| {
        n.parse::<i32>().ok().map(|n| if n < 100 { 2000 + n } else { n })
    })?;
    let dd = match day {
        Some((_, n)) => n.parse().ok()?,
        None => 15,
    };
    let d = add(date(y, mi as i32 + 1, dd)?, days)?;
    // Rebuild by replacing the month name, the day and the year in place.
    let new_month = render_month(month_txt, d.month());
    let mut out = String::with_capacity(v.len() + 4);
    let mut edits: Vec<(usize, usize, String)> = vec![(mstart, mstart + mlen, new_month)];
    if let Some((p, n)) = day {
        let new_day = if n.starts_with('0') && d.day() < 10 {
            format!("0{}", d.day())
        } else {
            d.day().to_string()
        };
        // Fix an ordinal suffix right after the day.
        let suf_len = ["st", "nd", "rd", "th"]
            .iter()
            .find(|s| lower[p + n.len()..].starts_with(*s))
            .map_or(0, |s| s.len());
        let suffix = if suf_len > 0 { ordinal(d.day()) } else { "" };
        let suffix = if v[p + n.len()..].starts_with(|c: char| c.is_ascii_uppercase()) {
            suffix.to_ascii_uppercase()
        } else {
            suffix.to_string()
        };
        edits.push((p, p + n.len() + suf_len, format!("{new_day}{suffix}")));
    }
    if let Some((p, n)) = year {
        let ny = if n.len() == 2 {
            format!("{:02}", d.year() % 100)
        } else {
            format!("{:04}", d.year())
        };
        edits.push((p, p + n.len(), ny));
    }
    edits.sort_by_key(|e| e.0);
    let mut last = 0;
    for (s, e, r) in edits {
        if s < last {
            return None;
        }
        out.push_str(&v[last..s]);
        out.push_str(&r);
        last = e;
    }
    out.push_str(&v[last..]);
    Some(out)
}

fn number_runs(v: &str) -> Vec<(usize, &str)> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push((s, &v[s..i]));
        } else {
            i += 1;
        }
    }
    out
}

fn render_month(original: &str, m: Month) -> String {
    let full = MONTHS[m as usize - 1];
    let base = if original.len() > 3 && original.len() != 4 {
        full.to_string()
    } else {
        full[..original.len().min(full.len())].to_string()
    };
    if original.chars().all(|c| c.is_ascii_uppercase()) {
        base.to_ascii_uppercase()
    } else if original.starts_with(|c: char| c.is_ascii_uppercase()) {
        let mut c = base.chars();
        c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
    } else {
        base
    }
}

fn ordinal(day: u8) -> &'static str {
    match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

fn year_of(text: &str, n: i32) -> (i32, bool) {
    if text.len() == 2 {
        (if n < 50 { 2000 + n } else { 1900 + n }, true)
    } else {
        (n, false)
    }
}

fn pad(original: &str, n: i32) -> String {
    if original.len() == 2 && n < 10 {
        format!("0{n}")
    } else {
        n.to_string()
    }
}

fn date(y: i32, m: i32, d: i32) -> Option<Date> {
    Date::from_calendar_date(y, Month::try_from(u8::try_from(m).ok()?).ok()?, u8::try_from(d).ok()?)
        .ok()
}

fn add(d: Date, days: i64) -> Option<Date> {
    d.checked_add(Duration::days(days))
}

#[cfg(test)]
mod tests {
    use super::shift;

    #[test]
    fn formats_survive_a_shift() {
        assert_eq!(shift("03/14/2021", 10).as_deref(), Some("03/24/2021"));
        assert_eq!(shift("3/14", -14).as_deref(), Some("2/28"));
        assert_eq!(shift("2021-03-14", 30).as_deref(), Some("2021-04-13"));
        assert_eq!(shift("4/12/22", 1).as_deref(), Some("4/13/22"));
        assert_eq!(shift("March 14th, 2021", 8).as_deref(), Some("March 22nd, 2021"));
        assert_eq!(shift("Mar 14", 20).as_deref(), Some("Apr 3"));
        assert_eq!(shift("14-Mar-2021", -14).as_deref(), Some("28-Feb-2021"));
        assert_eq!(shift("2021-03-14T10:22:31Z", 1).as_deref(), Some("2021-03-15T10:22:31Z"));
        assert_eq!(shift("15th of January 2022", 1).as_deref(), Some("16th of January 2022"));
        assert_eq!(shift("MARCH 2021", 31).as_deref(), Some("APRIL 2021"));
        assert_eq!(shift("last week", 3), None);
    }
}

//! IANA time zones for the times a digest and the `datetime` filter show.
//!
//! A [`Zone`] is a `Copy` handle to a zone of the IANA database compiled
//! into the binary (jiff's bundled copy: one byte blob and a name index, so
//! next to nothing for the loader to relocate at start-up); the system's
//! `/usr/share/zoneinfo` is never read, so times do not depend on the image.
//! Each zone is read from the database the first time its name is parsed
//! and kept for the life of the process: at most one entry per IANA name,
//! so the table is bounded by the database, never by the number of calls.
//!
//! `Zone` is a [`chrono::TimeZone`]: `instant.with_timezone(&zone)` and
//! `.format("%H:%M %Z")` work as with any chrono zone, `%Z` showing the
//! zone's abbreviation at that instant (`CST`, `CEST`, `EST`).

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, Utc};
use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// An IANA time zone, such as `Asia/Shanghai`, `Europe/Berlin` or `UTC`.
#[derive(Clone, Copy)]
pub struct Zone(&'static Entry);

struct Entry {
    /// The IANA name, as the config spelled it (parsing is case-sensitive).
    name: &'static str,
    zone: TimeZone,
}

static UTC: Entry = Entry {
    name: "UTC",
    zone: TimeZone::UTC,
};

/// The zones parsed so far: at most one per IANA name.
static ZONES: Mutex<Vec<&'static Entry>> = Mutex::new(Vec::new());

impl Zone {
    /// Coordinated Universal Time.
    pub const UTC: Zone = Zone(&UTC);

    /// `Asia/Shanghai`, the default for DingTalk's readers.
    pub fn shanghai() -> Zone {
        // The database is compiled in, so this cannot miss (a test checks).
        "Asia/Shanghai".parse().unwrap_or(Zone::UTC)
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The offset and abbreviation in force at `at`.
    fn at(self, at: Timestamp) -> ZoneOffset {
        ZoneOffset {
            zone: self,
            fixed: fixed(self.0.zone.to_offset(at)),
            at,
        }
    }
}

/// A name that is not an IANA time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownZone {
    #[error("`{0}` is not a time zone; use an IANA name such as Asia/Shanghai or UTC")]
    Unknown(String),
    #[error("`{given}` is not a time zone; IANA names are case-sensitive: {name}")]
    Case { given: String, name: String },
}

impl FromStr for Zone {
    type Err = UnknownZone;

    /// An IANA name, spelled exactly (`Asia/Shanghai`, not `asia/shanghai`).
    fn from_str(name: &str) -> Result<Zone, UnknownZone> {
        if name == UTC.name {
            return Ok(Zone::UTC);
        }
        let mut zones = ZONES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&entry) = zones.iter().find(|entry| entry.name == name) {
            return Ok(Zone(entry));
        }
        // The database looks names up without regard to case; the IANA
        // names (and what this sink accepted before) are case-sensitive.
        let zone = jiff::tz::db()
            .get(name)
            .map_err(|_| UnknownZone::Unknown(name.to_owned()))?;
        match zone.iana_name() {
            Some(found) if found == name => {}
            Some(found) => {
                return Err(UnknownZone::Case {
                    given: name.to_owned(),
                    name: found.to_owned(),
                });
            }
            None => return Err(UnknownZone::Unknown(name.to_owned())),
        }
        let entry: &'static Entry = Box::leak(Box::new(Entry {
            name: Box::leak(name.into()),
            zone,
        }));
        zones.push(entry);
        Ok(Zone(entry))
    }
}

impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Zone;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IANA time zone name such as Asia/Shanghai or UTC")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Zone, E> {
                name.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// By name, as configured: `Asia/Calcutta` (a link) is not `Asia/Kolkata`,
/// nor `Etc/UTC` `UTC`, though they tell the same time.
impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Zone {}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.0.name)
    }
}

/// A zone's offset at an instant: `fix()` is the UTC offset, `Display` the
/// abbreviation (what chrono shows for `%Z`).
#[derive(Clone, Copy)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
    /// The instant, to read the abbreviation from when shown.
    at: Timestamp,
}

impl ZoneOffset {
    /// The zone's abbreviation at that instant, such as `CST` or `CEST`.
    pub fn abbreviation(&self) -> String {
        self.zone
            .0
            .zone
            .to_offset_info(self.at)
            .abbreviation()
            .to_owned()
    }
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.zone.0.zone.to_offset_info(self.at).abbreviation())
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}{}", self.fixed)
    }
}

impl chrono::TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone
    }

    /// As chrono-tz: one offset that occurs on that day, preferring one
    /// that holds all day at either end of it.
    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<ZoneOffset> {
        let earliest = self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN));
        let latest = match NaiveTime::from_hms_opt(23, 59, 59) {
            Some(time) => self.offset_from_local_datetime(&local.and_time(time)),
            None => LocalResult::None,
        };
        match (earliest, latest) {
            (result @ LocalResult::Single(_), _) | (_, result @ LocalResult::Single(_)) => result,
            (LocalResult::Ambiguous(offset, _), _) | (_, LocalResult::Ambiguous(offset, _)) => {
                LocalResult::Single(offset)
            }
            (LocalResult::None, LocalResult::None) => LocalResult::None,
        }
    }

    /// `Single` off a transition, `Ambiguous(earlier, later)` in a fold
    /// (clocks turned back), `None` in a gap (clocks turned forward).
    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<ZoneOffset> {
        let local_seconds = in_range(local.and_utc().timestamp());
        let civil = jiff::tz::Offset::UTC.to_datetime(timestamp(local_seconds));
        let at = |offset: jiff::tz::Offset| {
            self.at(timestamp(local_seconds - i64::from(offset.seconds())))
        };
        match self.0.zone.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(at(offset)),
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(at(before), at(after))
            }
            AmbiguousOffset::Gap { .. } => LocalResult::None,
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.at(timestamp(in_range(utc.and_utc().timestamp())))
    }
}

/// 400 Gregorian years in seconds: the calendar (leap years and weekdays)
/// repeats after it, and so do a zone's rules past its last transition.
const CYCLE: i64 = 146_097 * 86_400;

/// `seconds` moved by whole 400-year cycles into the years the database
/// covers (about ±9999), two days inside its ends so that a local time and
/// its instant both fit. chrono reaches further; the offsets there are the
/// same as 400 years nearer, as the rules before the first and after the
/// last transition do not change by year.
fn in_range(seconds: i64) -> i64 {
    let low = Timestamp::MIN.as_second() + 2 * 86_400;
    let high = Timestamp::MAX.as_second() - 2 * 86_400;
    if seconds > high {
        seconds - (seconds - high + CYCLE - 1) / CYCLE * CYCLE
    } else if seconds < low {
        seconds + (low - seconds + CYCLE - 1) / CYCLE * CYCLE
    } else {
        seconds
    }
}

/// The instant `seconds` after the epoch, which `in_range` keeps in range.
fn timestamp(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// chrono's offset for jiff's; the database's are all within a day, and
/// chrono's range.
fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds()).unwrap_or_else(|| Utc.fix())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Datelike as _, TimeZone as _};

    fn zone(name: &str) -> Zone {
        name.parse().expect("an IANA name")
    }

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("a local time")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    #[test]
    fn names_parse_exactly_as_iana_spells_them() {
        assert_eq!(zone("UTC"), Zone::UTC);
        assert_eq!(zone("Etc/UTC").name(), "Etc/UTC");
        assert_eq!(zone("Asia/Shanghai"), Zone::shanghai());
        assert_eq!(Zone::shanghai().to_string(), "Asia/Shanghai");
        assert_eq!(zone("Europe/Berlin").to_string(), "Europe/Berlin");
        // Links (old names) stay accepted, under their own name.
        assert_eq!(zone("Asia/Calcutta").name(), "Asia/Calcutta");
        assert_eq!(zone("US/Eastern").name(), "US/Eastern");
        assert_eq!(
            "Mars/Base".parse::<Zone>(),
            Err(UnknownZone::Unknown("Mars/Base".into()))
        );
        assert_eq!("".parse::<Zone>(), Err(UnknownZone::Unknown(String::new())));
        assert_eq!(
            " UTC".parse::<Zone>(),
            Err(UnknownZone::Unknown(" UTC".into()))
        );
        let err = "asia/shanghai".parse::<Zone>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`asia/shanghai` is not a time zone; IANA names are case-sensitive: Asia/Shanghai"
        );
        assert!("utc".parse::<Zone>().is_err());
    }

    #[test]
    fn a_zone_is_read_once_however_often_it_is_parsed() {
        let first = zone("Pacific/Chatham");
        for _ in 0..100 {
            assert!(std::ptr::eq(zone("Pacific/Chatham").0, first.0));
        }
        assert!("Nowhere/Else".parse::<Zone>().is_err());
        let zones = ZONES.lock().unwrap();
        let count = |name| zones.iter().filter(|entry| entry.name == name).count();
        assert_eq!(count("Pacific/Chatham"), 1);
        assert_eq!(count("Nowhere/Else"), 0);
    }

    #[test]
    fn deserializes_from_a_name_and_says_what_is_wrong() {
        #[derive(serde::Deserialize)]
        struct Config {
            timezone: Zone,
        }
        let config: Config =
            serde_json::from_str(r#"{"timezone":"Europe/Berlin"}"#).expect("a zone");
        assert_eq!(config.timezone, zone("Europe/Berlin"));
        let err = serde_json::from_str::<Config>(r#"{"timezone":"Mars/Base"}"#)
            .err()
            .expect("not a zone")
            .to_string();
        assert!(err.contains("`Mars/Base` is not a time zone"), "{err}");
        let err = serde_json::from_str::<Config>(r#"{"timezone":8}"#)
            .err()
            .expect("not a name")
            .to_string();
        assert!(err.contains("an IANA time zone name"), "{err}");
    }

    #[test]
    fn shows_local_times_with_the_abbreviation_in_force() {
        let shanghai = Zone::shanghai();
        let at = utc("2024-05-01T10:30:05Z").with_timezone(&shanghai);
        assert_eq!(
            at.format("%Y-%m-%d %H:%M:%S %Z %:z").to_string(),
            "2024-05-01 18:30:05 CST +08:00"
        );
        let berlin = zone("Europe/Berlin");
        let summer = utc("2024-07-01T12:00:00Z").with_timezone(&berlin);
        assert_eq!(summer.format("%H:%M %Z %z").to_string(), "14:00 CEST +0200");
        assert_eq!(summer.offset().abbreviation(), "CEST");
        let winter = utc("2024-01-01T12:00:00Z").with_timezone(&berlin);
        assert_eq!(winter.format("%H:%M %Z").to_string(), "13:00 CET");
        let new_york = utc("2024-01-01T12:00:00Z").with_timezone(&zone("America/New_York"));
        assert_eq!(new_york.format("%H:%M %Z").to_string(), "07:00 EST");
        let utc_shown = utc("2024-01-01T12:00:00Z").with_timezone(&Zone::UTC);
        assert_eq!(utc_shown.format("%H:%M %Z").to_string(), "12:00 UTC");
        assert_eq!(format!("{:?}", summer.offset()), "CEST+02:00");
        // The instant is kept: back to UTC, and equal to itself in any zone.
        assert_eq!(summer.with_timezone(&Utc), utc("2024-07-01T12:00:00Z"));
        assert_eq!(
            summer,
            winter.with_timezone(&Utc) + chrono::Duration::days(182)
        );
    }

    #[test]
    fn berlin_switches_at_one_utc_on_the_last_sundays_of_march_and_october() {
        let berlin = zone("Europe/Berlin");
        let shown = |text| {
            utc(text)
                .with_timezone(&berlin)
                .format("%H:%M:%S %Z")
                .to_string()
        };
        assert_eq!(shown("2024-03-31T00:59:59Z"), "01:59:59 CET");
        assert_eq!(shown("2024-03-31T01:00:00Z"), "03:00:00 CEST");
        assert_eq!(shown("2024-10-27T00:59:59Z"), "02:59:59 CEST");
        assert_eq!(shown("2024-10-27T01:00:00Z"), "02:00:00 CET");
    }

    #[test]
    fn a_local_time_in_the_spring_gap_does_not_exist() {
        let berlin = zone("Europe/Berlin");
        for time in [
            "2024-03-31 02:00:00",
            "2024-03-31 02:30:00",
            "2024-03-31 02:59:59",
        ] {
            assert!(
                matches!(
                    berlin.offset_from_local_datetime(&local(time)),
                    LocalResult::None
                ),
                "{time}"
            );
            assert_eq!(berlin.from_local_datetime(&local(time)), LocalResult::None);
        }
        let before = berlin
            .from_local_datetime(&local("2024-03-31 01:59:59"))
            .single()
            .expect("one");
        assert_eq!(before.with_timezone(&Utc), utc("2024-03-31T00:59:59Z"));
        assert_eq!(before.offset().to_string(), "CET");
        let after = berlin
            .from_local_datetime(&local("2024-03-31 03:00:00"))
            .single()
            .expect("one");
        assert_eq!(after.with_timezone(&Utc), utc("2024-03-31T01:00:00Z"));
        assert_eq!(after.offset().to_string(), "CEST");
    }

    #[test]
    fn a_local_time_in_the_autumn_fold_happens_twice() {
        let berlin = zone("Europe/Berlin");
        let LocalResult::Ambiguous(earlier, later) =
            berlin.from_local_datetime(&local("2024-10-27 02:30:00"))
        else {
            panic!("02:30 happens twice on 2024-10-27 in Berlin");
        };
        assert_eq!(earlier.with_timezone(&Utc), utc("2024-10-27T00:30:00Z"));
        assert_eq!(
            earlier.format("%H:%M %Z %:z").to_string(),
            "02:30 CEST +02:00"
        );
        assert_eq!(later.with_timezone(&Utc), utc("2024-10-27T01:30:00Z"));
        assert_eq!(later.format("%H:%M %Z %:z").to_string(), "02:30 CET +01:00");
        // Either side of the fold, one instant.
        for (time, at) in [
            ("2024-10-27 01:59:59", "2024-10-26T23:59:59Z"),
            ("2024-10-27 03:00:00", "2024-10-27T02:00:00Z"),
        ] {
            let single = berlin
                .from_local_datetime(&local(time))
                .single()
                .expect(time);
            assert_eq!(single.with_timezone(&Utc), utc(at), "{time}");
        }
        // A day with a fold or a gap still has one offset for the date.
        let day = NaiveDate::from_ymd_opt(2024, 10, 27).expect("a date");
        assert!(matches!(
            berlin.offset_from_local_date(&day),
            LocalResult::Single(_)
        ));
        let day = NaiveDate::from_ymd_opt(2024, 3, 31).expect("a date");
        assert!(matches!(
            berlin.offset_from_local_date(&day),
            LocalResult::Single(_)
        ));
    }

    #[test]
    fn times_beyond_the_database_years_take_the_rules_of_four_hundred_years_nearer() {
        let berlin = zone("Europe/Berlin");
        let far = NaiveDate::from_ymd_opt(40_024, 7, 1)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("a far date");
        let shown = far.and_utc().with_timezone(&berlin);
        assert_eq!(shown.format("%H:%M %Z").to_string(), "14:00 CEST");
        let winter = far
            .with_month(1)
            .expect("january")
            .and_utc()
            .with_timezone(&berlin);
        assert_eq!(winter.format("%H:%M %Z").to_string(), "13:00 CET");
        let local_far = berlin.from_local_datetime(&far).single().expect("one");
        assert_eq!(local_far.naive_utc(), far - chrono::Duration::hours(2));
        let past = NaiveDate::from_ymd_opt(-40_000, 7, 1)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("a far past date");
        // Before the first transition: local mean time, +00:53:28 in Berlin.
        assert_eq!(
            berlin
                .offset_from_utc_datetime(&past)
                .fix()
                .local_minus_utc(),
            3208
        );
        assert!(in_range(i64::MAX) <= Timestamp::MAX.as_second());
        assert!(in_range(i64::MIN) >= Timestamp::MIN.as_second());
    }
}

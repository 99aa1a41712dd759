//! Durations as the configuration writes them: a whole number of milliseconds or
//! seconds, with the bounds of each key part of its type. A loaded configuration
//! therefore holds no duration that could overflow a deadline (`Instant + Duration`)
//! or make something wait for ever.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The unit a duration key is written in.
pub trait TimeUnit: Copy + Eq {
    /// The unit's name in messages, plural.
    const NAME: &'static str;
    fn duration(count: u64) -> Duration;
}

/// Keys ending in `_ms`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Milliseconds;

/// Keys ending in `_s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seconds;

impl TimeUnit for Milliseconds {
    const NAME: &'static str = "milliseconds";
    fn duration(count: u64) -> Duration {
        Duration::from_millis(count)
    }
}

impl TimeUnit for Seconds {
    const NAME: &'static str = "seconds";
    fn duration(count: u64) -> Duration {
        Duration::from_secs(count)
    }
}

/// A whole number of `U`, at least `MIN` and at most `MAX`; written as the bare
/// number.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct BoundedDuration<U: TimeUnit, const MIN: u64, const MAX: u64> {
    count: u64,
    unit: PhantomData<U>,
}

/// A duration key in milliseconds (`…_ms`), from `MIN` to `MAX`.
pub type Millis<const MIN: u64, const MAX: u64> = BoundedDuration<Milliseconds, MIN, MAX>;
/// A duration key in seconds (`…_s`), from `MIN` to `MAX`.
pub type Secs<const MIN: u64, const MAX: u64> = BoundedDuration<Seconds, MIN, MAX>;

impl<U: TimeUnit, const MIN: u64, const MAX: u64> BoundedDuration<U, MIN, MAX> {
    /// For values written in code (defaults, tests).
    ///
    /// # Panics
    /// When `count` is out of bounds, as a wrong default is a bug.
    pub fn new(count: u64) -> Self {
        Self::try_from(count).unwrap_or_else(|problem| panic!("{problem}"))
    }

    pub fn duration(&self) -> Duration {
        U::duration(self.count)
    }
}

impl<U: TimeUnit, const MIN: u64, const MAX: u64> TryFrom<u64> for BoundedDuration<U, MIN, MAX> {
    type Error = String;

    fn try_from(count: u64) -> Result<Self, Self::Error> {
        if (MIN..=MAX).contains(&count) {
            Ok(Self {
                count,
                unit: PhantomData,
            })
        } else {
            Err(format!(
                "must be between {MIN} and {MAX} {}, not {count}",
                U::NAME
            ))
        }
    }
}

impl<U: TimeUnit, const MIN: u64, const MAX: u64> From<BoundedDuration<U, MIN, MAX>> for u64 {
    fn from(duration: BoundedDuration<U, MIN, MAX>) -> u64 {
        duration.count
    }
}

impl<U: TimeUnit, const MIN: u64, const MAX: u64> fmt::Debug for BoundedDuration<U, MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.count, U::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_bounds_become_durations() {
        assert_eq!(Millis::<0, 1_000>::new(0).duration(), Duration::ZERO);
        assert_eq!(
            Millis::<1, 1_000>::new(1_000).duration(),
            Duration::from_secs(1)
        );
        assert_eq!(Secs::<1, 60>::new(60).duration(), Duration::from_secs(60));
    }

    #[test]
    fn counts_out_of_bounds_are_refused_with_the_bounds() {
        let below = Secs::<1, 60>::try_from(0).unwrap_err();
        assert_eq!(below, "must be between 1 and 60 seconds, not 0");
        let above = Millis::<0, 1_000>::try_from(u64::MAX).unwrap_err();
        assert!(above.contains("between 0 and 1000 milliseconds"), "{above}");
    }

    #[test]
    #[should_panic(expected = "between 1 and 60 seconds")]
    fn a_wrong_value_in_code_is_a_bug() {
        Secs::<1, 60>::new(61);
    }

    #[test]
    fn debug_shows_the_count_and_unit() {
        assert_eq!(format!("{:?}", Millis::<0, 10>::new(5)), "5 milliseconds");
    }
}

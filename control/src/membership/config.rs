//! The one knob of failure detection, and the foca settings derived from it.
//!
//! An operator says how soon a dead node must be declared down
//! (`detection`, 2 s by default, DESIGN §5); everything else follows.
//! With `P = detection / 5`:
//!
//! | foca setting              | value      | default |
//! |---------------------------|------------|---------|
//! | `probe_period`            | `P`        | 400 ms  |
//! | `probe_rtt`               | `P / 3`    | 133 ms  |
//! | `suspect_to_down_after`   | `2 P`      | 800 ms  |
//! | `periodic_gossip`         | `P / 4`    | 100 ms  |
//! | `periodic_announce`       | `25 P`     | 10 s    |
//! | announce to down members  | `5 P`      | 2 s     |
//!
//! A node that dies is probed by some peer within about one period (every
//! peer probes one member per period, walking a shuffled list), the probe
//! fails at the end of that period (direct ping, then indirect pings after
//! `probe_rtt`), the prober marks it suspect and gossips that, and
//! `2 P` later it is down: `P + P + 2 P = 4 P`, leaving one period of the
//! budget for the news to spread (a gossip round every `P / 4`). Announcing
//! to down members every `5 P` is what heals partitions and lets restarted
//! nodes back in without a manual step.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use thiserror::Error;

/// The smallest `detection` accepted: below it the probe round trip
/// (`detection / 15`) drops under about 33 ms and a busy but healthy node
/// would be declared down.
pub const MIN_DETECTION: Duration = Duration::from_millis(500);

/// The largest `detection` accepted: past it a dead node keeps receiving
/// traffic for longer than any deployment should want.
pub const MAX_DETECTION: Duration = Duration::from_secs(300);

/// The largest gossip plaintext: sealed ([`super::seal::OVERHEAD`], 53
/// bytes) and with IPv4 and UDP headers it stays under a 1500-byte MTU.
pub const MAX_PACKET_SIZE: NonZeroUsize = NonZeroUsize::new(1400).unwrap();

/// How many times an update is piggybacked; plenty for clusters of up to a
/// few hundred nodes.
const MAX_TRANSMISSIONS: NonZeroU8 = NonZeroU8::new(10).unwrap();

const TWO: NonZeroUsize = NonZeroUsize::new(2).unwrap();
const THREE: NonZeroUsize = NonZeroUsize::new(3).unwrap();

/// Failure-detection settings for [`super::Membership`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipConfig {
    detection: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            detection: Duration::from_secs(2),
        }
    }
}

/// Why a membership setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `detection` outside [`MIN_DETECTION`]..=[`MAX_DETECTION`].
    #[error(
        "failure detection time {got:?} is out of range: use between {min:?} and {max:?} \
         (the default is 2s)"
    )]
    Detection {
        /// The refused value.
        got: Duration,
        /// [`MIN_DETECTION`].
        min: Duration,
        /// [`MAX_DETECTION`].
        max: Duration,
    },
}

impl MembershipConfig {
    /// Settings that declare a dead node down within about `detection`.
    pub fn new(detection: Duration) -> Result<Self, ConfigError> {
        if !(MIN_DETECTION..=MAX_DETECTION).contains(&detection) {
            return Err(ConfigError::Detection {
                got: detection,
                min: MIN_DETECTION,
                max: MAX_DETECTION,
            });
        }
        Ok(Self { detection })
    }

    /// How soon a dead node is declared down.
    pub fn detection(&self) -> Duration {
        self.detection
    }

    /// foca's settings, derived as the module docs explain.
    pub(crate) fn to_foca(self) -> foca::Config {
        let period = self.detection / 5;
        let every = |frequency: Duration, num_members: NonZeroUsize| foca::PeriodicParams {
            frequency,
            num_members,
        };
        foca::Config {
            probe_period: period,
            probe_rtt: period / 3,
            num_indirect_probes: THREE,
            max_transmissions: MAX_TRANSMISSIONS,
            suspect_to_down_after: period * 2,
            remove_down_after: Some(Duration::from_secs(24 * 60 * 60)),
            max_packet_size: MAX_PACKET_SIZE,
            notify_down_members: true,
            periodic_announce: Some(every(period * 25, NonZeroUsize::MIN)),
            periodic_announce_to_down_members: Some(every(period * 5, TWO)),
            periodic_gossip: Some(every(period / 4, THREE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_follows_the_documented_arithmetic() {
        let c = MembershipConfig::default().to_foca();
        assert_eq!(c.probe_period, Duration::from_millis(400));
        assert!(c.probe_rtt < c.probe_period / 2);
        assert_eq!(c.suspect_to_down_after, Duration::from_millis(800));
        assert!(c.probe_period * 2 + c.suspect_to_down_after <= Duration::from_secs(2));
    }

    #[test]
    fn out_of_range_detection_is_refused_with_the_range() {
        let err = MembershipConfig::new(Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("between 500ms and 300s"), "{err}");
        assert!(MembershipConfig::new(Duration::from_secs(301)).is_err());
        assert!(MembershipConfig::new(MIN_DETECTION).is_ok());
    }
}

//! The avatar's training state machine: what a callback may change. Pure: values in, decision out.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::fal::{TrainedFiles, TrainingEvent};

/// An avatar's state. Spelled as the bot's SQLAlchemy model stores it: `Enum(AvatarStatus,
/// native_enum=False)` writes and reads the member NAMES, upper case, and raises on any other
/// spelling, so `as_str` is the only spelling this service writes anywhere (table, cache,
/// stream, API). Reading accepts any case: older rows may be lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarStatus {
    Draft,
    PhotosUploading,
    ReadyForTraining,
    Training,
    Completed,
    Error,
    Cancelled,
}

impl AvatarStatus {
    pub const ALL: [AvatarStatus; 7] = [
        AvatarStatus::Draft,
        AvatarStatus::PhotosUploading,
        AvatarStatus::ReadyForTraining,
        AvatarStatus::Training,
        AvatarStatus::Completed,
        AvatarStatus::Error,
        AvatarStatus::Cancelled,
    ];

    /// The states a callback can put an avatar in: the column must be able to hold each.
    pub const WRITTEN: [AvatarStatus; 4] = [
        AvatarStatus::Training,
        AvatarStatus::Completed,
        AvatarStatus::Error,
        AvatarStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AvatarStatus::Draft => "DRAFT",
            AvatarStatus::PhotosUploading => "PHOTOS_UPLOADING",
            AvatarStatus::ReadyForTraining => "READY_FOR_TRAINING",
            AvatarStatus::Training => "TRAINING",
            AvatarStatus::Completed => "COMPLETED",
            AvatarStatus::Error => "ERROR",
            AvatarStatus::Cancelled => "CANCELLED",
        }
    }

    /// Callbacks never move an avatar out of these.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AvatarStatus::Completed | AvatarStatus::Error | AvatarStatus::Cancelled
        )
    }
}

impl fmt::Display for AvatarStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AvatarStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown avatar status {s:?}"))
    }
}

impl Serialize for AvatarStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AvatarStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Which FAL trainer an avatar uses; spelled as the bot's ORM stores it, like `AvatarStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingType {
    Portrait,
    Style,
}

impl TrainingType {
    pub const ALL: [TrainingType; 2] = [TrainingType::Portrait, TrainingType::Style];

    pub fn as_str(self) -> &'static str {
        match self {
            TrainingType::Portrait => "PORTRAIT",
            TrainingType::Style => "STYLE",
        }
    }

    /// Any case: `?training_type=portrait`, the bot's `STYLE`, older rows.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(s))
    }
}

impl Serialize for TrainingType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TrainingType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown training type {name:?}")))
    }
}

/// What the avatar row looks like before the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub status: AvatarStatus,
    pub progress: i32,
}

/// The new values a callback writes; `None` keeps the stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: AvatarStatus,
    pub progress: Option<i32>,
    pub files: TrainedFiles,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one per delivery, short-lived: boxing would allocate each
pub enum Decision {
    Apply(Change),
    /// Nothing to change; the reason goes to the log and the stored event.
    Ignore(&'static str),
}

pub fn decide(current: Current, event: &TrainingEvent) -> Decision {
    if current.status.is_terminal() {
        return Decision::Ignore("avatar is already in a terminal state");
    }
    let change = |status| Change {
        status,
        progress: None,
        files: TrainedFiles::default(),
        error: None,
    };
    match event {
        TrainingEvent::Queued if current.status == AvatarStatus::Training => {
            Decision::Ignore("avatar is already training")
        }
        TrainingEvent::Queued => Decision::Apply(change(AvatarStatus::Training)),
        TrainingEvent::InProgress { progress } => {
            let forward = progress.filter(|p| *p > current.progress);
            if current.status == AvatarStatus::Training && forward.is_none() {
                return Decision::Ignore("progress does not move forward");
            }
            Decision::Apply(Change {
                progress: forward,
                ..change(AvatarStatus::Training)
            })
        }
        TrainingEvent::Completed(files) => Decision::Apply(Change {
            progress: Some(100),
            files: files.clone(),
            ..change(AvatarStatus::Completed)
        }),
        TrainingEvent::Failed { error } => Decision::Apply(Change {
            error: Some(error.clone()),
            ..change(AvatarStatus::Error)
        }),
        TrainingEvent::Cancelled => Decision::Apply(change(AvatarStatus::Cancelled)),
    }
}

/// The status a stored delivery of this kind (`TrainingEvent::kind`) set when it was applied
/// (the operators' console tells a delivery's before and after by it).
pub fn status_set_by(kind: &str) -> Option<AvatarStatus> {
    match kind {
        "queued" | "in_progress" => Some(AvatarStatus::Training),
        "completed" => Some(AvatarStatus::Completed),
        "failed" => Some(AvatarStatus::Error),
        "cancelled" => Some(AvatarStatus::Cancelled),
        _ => None,
    }
}

/// What a finished training leads to after its commit (`tasks::followups` does each): the owner
/// hears of it in Telegram, and the training photos are removed as the bot removed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followup {
    NotifyReady,
    NotifyFailed,
    DeletePhotos,
}

impl Followup {
    pub const ALL: [Followup; 3] = [
        Followup::NotifyReady,
        Followup::NotifyFailed,
        Followup::DeletePhotos,
    ];

    /// As `avatar_followups.kind` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Followup::NotifyReady => "notify_ready",
            Followup::NotifyFailed => "notify_failed",
            Followup::DeletePhotos => "delete_photos",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// Which follow-ups are configured; none by default (no Telegram token, photos kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowupPolicy {
    pub notify_ready: bool,
    pub notify_failed: bool,
    pub delete_photos: bool,
}

impl FollowupPolicy {
    /// The follow-ups a change to `status` records.
    pub fn after(&self, status: AvatarStatus) -> Vec<Followup> {
        let wanted: &[(bool, Followup)] = match status {
            AvatarStatus::Completed => &[
                (self.notify_ready, Followup::NotifyReady),
                (self.delete_photos, Followup::DeletePhotos),
            ],
            AvatarStatus::Error => &[(self.notify_failed, Followup::NotifyFailed)],
            _ => &[],
        };
        wanted
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, kind)| *kind)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fal::FileRef;
    use AvatarStatus::*;

    fn at(status: AvatarStatus, progress: i32) -> Current {
        Current { status, progress }
    }

    fn new_status(decision: &Decision) -> Option<AvatarStatus> {
        match decision {
            Decision::Apply(change) => Some(change.status),
            Decision::Ignore(_) => None,
        }
    }

    #[test]
    fn each_kind_names_the_status_its_applied_event_sets() {
        for event in events() {
            let applied = new_status(&decide(at(ReadyForTraining, 0), &event));
            assert_eq!(status_set_by(event.kind()), applied, "{}", event.kind());
        }
        assert_eq!(status_set_by("unverified"), None);
    }

    fn events() -> Vec<TrainingEvent> {
        vec![
            TrainingEvent::Queued,
            TrainingEvent::InProgress { progress: Some(50) },
            TrainingEvent::Completed(TrainedFiles::default()),
            TrainingEvent::Failed {
                error: "boom".into(),
            },
            TrainingEvent::Cancelled,
        ]
    }

    /// Every (status, event) pair: the full transition table.
    #[test]
    fn transition_table() {
        let table: [(AvatarStatus, [Option<AvatarStatus>; 5]); 7] = [
            // from                queued          in_progress(50)  completed        failed       cancelled
            (
                Draft,
                [
                    Some(Training),
                    Some(Training),
                    Some(Completed),
                    Some(Error),
                    Some(Cancelled),
                ],
            ),
            (
                PhotosUploading,
                [
                    Some(Training),
                    Some(Training),
                    Some(Completed),
                    Some(Error),
                    Some(Cancelled),
                ],
            ),
            (
                ReadyForTraining,
                [
                    Some(Training),
                    Some(Training),
                    Some(Completed),
                    Some(Error),
                    Some(Cancelled),
                ],
            ),
            (
                Training,
                [
                    None,
                    Some(Training),
                    Some(Completed),
                    Some(Error),
                    Some(Cancelled),
                ],
            ),
            (Completed, [None, None, None, None, None]),
            (Error, [None, None, None, None, None]),
            (Cancelled, [None, None, None, None, None]),
        ];
        for (from, expected) in table {
            for (event, want) in events().iter().zip(expected) {
                let got = new_status(&decide(at(from, 10), event));
                assert_eq!(got, want, "{from} + {}", event.kind());
            }
        }
    }

    #[test]
    fn progress_only_moves_forward() {
        let event = |p| TrainingEvent::InProgress { progress: Some(p) };
        assert!(matches!(
            decide(at(Training, 60), &event(40)),
            Decision::Ignore(_)
        ));
        assert!(matches!(
            decide(at(Training, 60), &event(60)),
            Decision::Ignore(_)
        ));
        let Decision::Apply(change) = decide(at(Training, 60), &event(80)) else {
            panic!()
        };
        assert_eq!(change.progress, Some(80));
    }

    #[test]
    fn late_in_progress_after_completed_changes_nothing() {
        assert!(matches!(
            decide(
                at(Completed, 100),
                &TrainingEvent::InProgress { progress: Some(99) }
            ),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn completion_sets_full_progress_and_files() {
        let files = TrainedFiles {
            lora: Some(FileRef {
                url: "https://v3.fal.media/x.safetensors".into(),
                content_type: None,
                file_name: None,
                file_size: None,
            }),
            config: None,
            finetune_id: None,
        };
        let Decision::Apply(change) =
            decide(at(Training, 40), &TrainingEvent::Completed(files.clone()))
        else {
            panic!()
        };
        assert_eq!(change.progress, Some(100));
        assert_eq!(change.files, files);
    }

    #[test]
    fn failure_records_the_error() {
        let Decision::Apply(change) = decide(
            at(Training, 40),
            &TrainingEvent::Failed {
                error: "OOM".into(),
            },
        ) else {
            panic!()
        };
        assert_eq!(change.status, Error);
        assert_eq!(change.error.as_deref(), Some("OOM"));
    }

    #[test]
    fn statuses_are_written_as_the_bots_orm_names_and_read_in_any_case() {
        let names: Vec<_> = AvatarStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "DRAFT",
                "PHOTOS_UPLOADING",
                "READY_FOR_TRAINING",
                "TRAINING",
                "COMPLETED",
                "ERROR",
                "CANCELLED"
            ]
        );
        for status in AvatarStatus::ALL {
            assert_eq!(status.as_str().parse::<AvatarStatus>(), Ok(status));
            // Printed (in logs, stream entries, messages) as it is written.
            assert_eq!(status.to_string(), status.as_str());
            let lower = status.as_str().to_ascii_lowercase();
            assert_eq!(lower.parse::<AvatarStatus>(), Ok(status));
        }
        assert_eq!("Training".parse::<AvatarStatus>(), Ok(Training));
        assert!("archived".parse::<AvatarStatus>().is_err());
        assert_eq!(serde_json::to_string(&Completed).unwrap(), "\"COMPLETED\"");
        assert_eq!(
            serde_json::from_str::<AvatarStatus>("\"completed\"").unwrap(),
            Completed
        );
    }

    #[test]
    fn only_a_finished_training_has_followups_and_only_those_configured() {
        let all = FollowupPolicy {
            notify_ready: true,
            notify_failed: true,
            delete_photos: true,
        };
        assert_eq!(
            all.after(Completed),
            [Followup::NotifyReady, Followup::DeletePhotos]
        );
        assert_eq!(all.after(Error), [Followup::NotifyFailed]);
        for status in [Training, Cancelled, Draft] {
            assert!(all.after(status).is_empty(), "{status}");
        }
        let photos_only = FollowupPolicy {
            delete_photos: true,
            ..FollowupPolicy::default()
        };
        assert_eq!(photos_only.after(Completed), [Followup::DeletePhotos]);
        assert!(photos_only.after(Error).is_empty());
        assert!(FollowupPolicy::default().after(Completed).is_empty());
        for kind in Followup::ALL {
            assert_eq!(Followup::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn training_types_are_written_upper_case_and_read_in_any_case() {
        assert_eq!(TrainingType::Portrait.as_str(), "PORTRAIT");
        assert_eq!(TrainingType::Style.as_str(), "STYLE");
        assert_eq!(TrainingType::parse("style"), Some(TrainingType::Style));
        assert_eq!(TrainingType::parse("STYLE"), Some(TrainingType::Style));
        assert_eq!(
            TrainingType::parse("Portrait"),
            Some(TrainingType::Portrait)
        );
        assert_eq!(TrainingType::parse("video"), None);
    }
}

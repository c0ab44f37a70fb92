use serde::{Deserialize, Serialize};

/// Where an intent is. Transitions only go forward (see `rank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Not requested yet (no events).
    #[default]
    New,
    PendingPayment,
    Authorized,
    Charging,
    Completed,
    Cancelled,
    Failed,
    Expired,
    CaptureFailed,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::PendingPayment => "pending_payment",
            Self::Authorized => "authorized",
            Self::Charging => "charging",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::CaptureFailed => "capture_failed",
        }
    }

    /// Forward order; every end state shares the top rank, so none replaces another.
    pub fn rank(self) -> u8 {
        match self {
            Self::New => 0,
            Self::PendingPayment => 1,
            Self::Authorized => 2,
            Self::Charging => 3,
            Self::Completed
            | Self::Cancelled
            | Self::Failed
            | Self::Expired
            | Self::CaptureFailed => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }
}

//! Typed identifiers, parsed at the edge.

use std::fmt;

/// `^[A-Za-z0-9_-]{1,64}$`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids_follow_the_contract_pattern() {
        assert!(WorkspaceId::parse("ws-1_A").is_some());
        assert!(WorkspaceId::parse(&"a".repeat(64)).is_some());
        for bad in ["", "ws 1", "ws/1", "ws.1", "é", &"a".repeat(65)] {
            assert!(WorkspaceId::parse(bad).is_none(), "{bad}");
        }
    }
}

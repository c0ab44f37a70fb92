//! One side-effecting step at a time per intent on this instance. A concurrent twin
//! (the same `complete` sent twice, a retry racing the first try, a webhook and a
//! support action) waits for the step under way, then decides from the state that step
//! recorded: a step already answered is not asked of Stripe again. (Across instances
//! the step's idempotency key makes Stripe answer a repeat the same.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct StepLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Held while a step runs; the entry goes when nobody holds or waits for it.
pub struct StepGuard<'a> {
    locks: &'a StepLocks,
    key: String,
    held: Option<OwnedMutexGuard<()>>,
}

impl StepLocks {
    pub async fn lock(&self, key: &str) -> StepGuard<'_> {
        let lock = {
            let mut map = self.0.lock().expect("step locks");
            map.entry(key.to_string()).or_default().clone()
        };
        StepGuard {
            locks: self,
            key: key.to_string(),
            held: Some(lock.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("step locks").len()
    }
}

impl Drop for StepGuard<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = self.locks.0.lock().expect("step locks");
        // Only the map holds it: nobody runs or waits.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_twin_waits_for_the_step_under_way_and_the_entry_goes_after() {
        let locks = Arc::new(StepLocks::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = locks.lock("ci-1").await;
        let (l, o) = (locks.clone(), order.clone());
        let twin = tokio::spawn(async move {
            let _g = l.lock("ci-1").await;
            o.lock().unwrap().push("twin");
        });
        // Another intent is not held up.
        drop(locks.lock("ci-2").await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        order.lock().unwrap().push("first");
        drop(first);
        twin.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["first", "twin"]);
        assert_eq!(locks.len(), 0);
    }
}

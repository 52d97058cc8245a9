//! Admission by budget, not by count: a job takes as many units as it costs (the resize
//! worker: MiB of its render's estimated peak memory), so one large photo cannot run beside
//! five others and blow memory. A job costing more than the whole budget runs alone (the
//! resize worker refuses such a job before it gets here).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::metrics;

/// A weighted semaphore with metrics.
#[derive(Clone)]
pub struct Budget {
    worker: &'static str,
    capacity: u32,
    sem: Arc<Semaphore>,
    in_use: Arc<AtomicU64>,
}

/// Units held by one job; released on drop.
pub struct BudgetPermit {
    _permit: OwnedSemaphorePermit,
    units: u32,
    budget: Budget,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        let now = self
            .budget
            .in_use
            .fetch_sub(u64::from(self.units), Ordering::Relaxed)
            - u64::from(self.units);
        metrics::admission_budget(self.budget.worker, now, u64::from(self.budget.capacity));
    }
}

impl Budget {
    /// A budget of `capacity` units (at least 1).
    pub fn new(worker: &'static str, capacity: u32) -> Self {
        let capacity = capacity.max(1);
        metrics::admission_budget(worker, 0, u64::from(capacity));
        Self {
            worker,
            capacity,
            sem: Arc::new(Semaphore::new(capacity as usize)),
            in_use: Arc::default(),
        }
    }

    /// Wait for `units` (clamped to the capacity).
    pub async fn acquire(&self, units: u32) -> BudgetPermit {
        let units = units.clamp(1, self.capacity);
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the semaphore is never closed");
        let now = self.in_use.fetch_add(u64::from(units), Ordering::Relaxed) + u64::from(units);
        metrics::admission_budget(self.worker, now, u64::from(self.capacity));
        BudgetPermit {
            _permit: permit,
            units,
            budget: self.clone(),
        }
    }

    /// Units in use now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_wait_for_budget_and_oversized_jobs_run_alone() {
        let b = Budget::new("test", 100);
        let big = b.acquire(80).await;
        assert_eq!(b.in_use(), 80);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire(30).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "30 units admitted beside 80 of 100");
        drop(big);
        let p = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.in_use(), 30);
        drop(p);
        let huge = b.acquire(10_000).await;
        assert_eq!(b.in_use(), 100, "an oversized job takes the whole budget");
        drop(huge);
        assert_eq!(b.in_use(), 0);
    }
}

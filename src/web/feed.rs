//! One poller shared by every open page: while at least one subscriber
//! watches, it fetches a value every interval and publishes it when it
//! differs from the last one; when the last subscriber leaves, it stops
//! and forgets the last value, so a later subscriber never starts from a
//! stale one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

type Fetch<T> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// The latest value, `None` until the first fetch of a polling run.
pub type Latest<T> = Option<Arc<T>>;

/// A lazily polled, deduplicated value; see the module docs.
pub struct Feed<T> {
    fetch: Fetch<T>,
    every: Duration,
    tx: watch::Sender<Latest<T>>,
    /// Whether a poller runs; taken with subscribing and with the poller's
    /// decision to stop, so that neither misses the other.
    polling: Mutex<bool>,
}

impl<T: PartialEq + Send + Sync + 'static> Feed<T> {
    /// A feed of what `fetch` returns, polled every `every`.
    pub fn new<F, Fut>(every: Duration, fetch: F) -> Arc<Feed<T>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        Arc::new(Feed {
            fetch: Box::new(move || Box::pin(fetch())),
            every,
            tx: watch::Sender::new(None),
            polling: Mutex::new(false),
        })
    }

    /// A receiver of every new value, starting the poller if none runs.
    /// Dropping it unsubscribes.
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Latest<T>> {
        let mut polling = self.polling.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.tx.subscribe();
        if !*polling {
            *polling = true;
            tokio::spawn(Arc::clone(self).poll());
        }
        rx
    }

    async fn poll(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let value = (self.fetch)().await;
            {
                let mut polling = self.polling.lock().unwrap_or_else(PoisonError::into_inner);
                if self.tx.receiver_count() == 0 {
                    *polling = false;
                    self.tx.send_replace(None);
                    return;
                }
            }
            self.tx.send_if_modified(|latest| {
                if latest.as_deref() == Some(&value) {
                    return false;
                }
                *latest = Some(Arc::new(value));
                true
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A feed whose value is `value`, counting its fetches.
    fn counting(value: Arc<AtomicU64>, fetches: Arc<AtomicU64>) -> Arc<Feed<u64>> {
        Feed::new(Duration::from_millis(5), move || {
            let (value, fetches) = (value.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                value.load(Ordering::SeqCst)
            }
        })
    }

    async fn next(rx: &mut watch::Receiver<Latest<u64>>) -> u64 {
        rx.changed().await.expect("the feed lives");
        rx.borrow_and_update().as_deref().copied().expect("a value")
    }

    async fn until(f: impl Fn() -> bool) {
        while !f() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn polling(feed: &Feed<u64>) -> bool {
        *feed.polling.lock().unwrap()
    }

    #[tokio::test]
    async fn sends_changes_only_and_polls_only_while_watched() {
        let value = Arc::new(AtomicU64::new(1));
        let fetches = Arc::new(AtomicU64::new(0));
        let feed = counting(value.clone(), fetches.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 0, "nobody watches yet");
        assert!(!polling(&feed));

        let mut a = feed.subscribe();
        let mut b = feed.subscribe();
        assert_eq!(next(&mut a).await, 1);
        assert_eq!(next(&mut b).await, 1);

        // Unchanged values are polled but not sent.
        let seen = fetches.load(Ordering::SeqCst);
        until(|| fetches.load(Ordering::SeqCst) >= seen + 5).await;
        assert!(!a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());

        value.store(2, Ordering::SeqCst);
        assert_eq!(next(&mut a).await, 2);
        assert_eq!(next(&mut b).await, 2);

        // The last subscriber leaving stops the poller and clears the value.
        drop(a);
        until(|| fetches.load(Ordering::SeqCst) >= seen + 10).await;
        assert!(polling(&feed), "one subscriber is left");
        drop(b);
        until(|| !polling(&feed)).await;
        let stopped = fetches.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetches.load(Ordering::SeqCst), stopped);

        // A new subscriber starts from a fresh fetch, not the old value.
        value.store(3, Ordering::SeqCst);
        let mut c = feed.subscribe();
        assert!(c.borrow().is_none());
        assert_eq!(next(&mut c).await, 3);
        assert!(fetches.load(Ordering::SeqCst) > stopped);
    }
}

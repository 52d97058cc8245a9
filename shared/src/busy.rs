//! The in-flight count a worker reports while it holds messages.
//!
//! The consumer loop reports how many messages it holds; whoever cares (ECS task scale-in
//! protection in `adapter::aws::task_protection`) watches the other end. The type lives here,
//! beside neither, so the consumer never imports an adapter.

use tokio::sync::watch;

/// The consumer's side: report how many messages are in flight.
#[derive(Clone, Debug)]
pub struct BusySignal(watch::Sender<usize>);

impl BusySignal {
    /// A signal starting at zero in flight, and the receiver that watches it.
    pub fn channel() -> (Self, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0usize);
        (Self(tx), rx)
    }

    /// `n` messages are in flight now.
    pub fn set(&self, n: usize) {
        self.0.send_replace(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_sees_the_latest_count() {
        let (signal, rx) = BusySignal::channel();
        assert_eq!(*rx.borrow(), 0);
        signal.set(3);
        signal.clone().set(2);
        assert_eq!(*rx.borrow(), 2);
    }
}

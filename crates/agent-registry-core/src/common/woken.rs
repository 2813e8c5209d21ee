//! A future polled again only once its own waker has fired, so a task that wakes often for one
//! reason (a heartbeat stream, for each beat) does not re-poll its rarely-ready waits (shutdown,
//! revocation, a directive), each of which takes its channel's lock when polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Wraps a future: the first poll reaches it; later polls reach it only if it asked to be
/// woken since, and otherwise return `Pending` at the cost of a waker registration and an
/// atomic swap. Like any future it must not be polled after it completed (it would stay
/// `Pending`).
pub struct WhenWoken<F> {
    inner: F,
    signal: Arc<Signal>,
    /// The waker the inner future is given, built once: its channels see the same waker at
    /// every poll and keep the one they stored.
    waker: Waker,
    polled: bool,
}

struct Signal {
    woken: AtomicBool,
    /// The task polling the wrapper, woken when the inner future is.
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future + Unpin> WhenWoken<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        Self {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
            polled: false,
        }
    }
}

impl<F: Future + Unpin> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake after the read finds this task's waker.
        this.signal.task.register(cx.waker());
        if this.polled && !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.polled = true;
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, waking whoever polled it when told to.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_after_its_wake() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let stored = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut f = WhenWoken::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: stored.clone(),
        });
        let outer_woken = Arc::new(Flag(AtomicBool::new(false)));
        let outer = Waker::from(outer_woken.clone());
        let mut cx = Context::from_waker(&outer);

        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        for _ in 0..10 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "not woken: not polled again"
        );

        ready.store(true, Ordering::SeqCst);
        stored.lock().unwrap().take().unwrap().wake();
        assert!(
            outer_woken.0.load(Ordering::SeqCst),
            "the inner wake reaches the task"
        );
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrapped_channel_wait_still_ends_a_select() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let mut stop = WhenWoken::new(Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let mut ticks = 0;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
                    ticks += 1;
                    if ticks == 5 {
                        tx.send_replace(true);
                    }
                }
            }
        }
        assert_eq!(ticks, 5);
    }

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

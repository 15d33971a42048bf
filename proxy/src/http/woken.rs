//! A future polled only when it was woken.
//!
//! `tokio::select!` polls every branch each time its task wakes. A served
//! connection wakes several times per request (request read, response
//! ready, response written), and its watchdogs (drain, idle timeout, abuse)
//! are `Notify`s and a timer whose polls take a lock or re-check the timer
//! each time: on the request path for nothing, since they almost never fire.
//! Wrapped in [`Woken`], they are polled only after one of them woke.

use futures_util::task::AtomicWaker;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

pin_project_lite::pin_project! {
    pub(crate) struct Woken<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        // Wakes `flag`: what `inner` registers with whatever it waits on.
        waker: Waker,
    }
}

struct Flag {
    woken: AtomicBool,
    /// The task polling the `Woken`.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Woken<F> {
    pub(crate) fn new(inner: F) -> Self {
        let flag = Arc::new(Flag {
            // The first poll must reach `inner`, so it can register.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            inner,
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pending until `ready` is set; counts its polls.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_once_until_it_wakes() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let mut woken = std::pin::pin!(Woken::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: waker.clone(),
        }));
        let task = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&task);
        for _ in 0..10 {
            assert!(woken.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled again without a wake"
        );
        ready.store(true, Ordering::Relaxed);
        waker.lock().unwrap().take().unwrap().wake();
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let n = notify.clone();
        let waiting = tokio::spawn(async move { Woken::new(n.notified()).await });
        tokio::task::yield_now().await;
        notify.notify_waiters();
        notify.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}

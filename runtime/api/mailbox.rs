//! A one-slot mailbox between the window scheduler and inference: live sources
//! replace a waiting window with the newest one (counted), files wait for the slot.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One slot, a closed flag, and a condition variable.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    slot: Mutex<(Option<T>, bool)>,
    changed: Condvar,
}

impl<T> Mailbox<T> {
    pub(crate) fn new() -> Self {
        Mailbox {
            slot: Mutex::new((None, false)),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<T>, bool)> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `item`, replacing a waiting one; returns true if one was replaced.
    pub(crate) fn put_latest(&self, item: T) -> bool {
        let mut g = self.lock();
        let replaced = g.0.replace(item).is_some();
        self.changed.notify_all();
        replaced
    }

    /// Puts `item` once the slot is free; gives it back if the mailbox closed or
    /// `give_up` says so while waiting.
    pub(crate) fn put_wait(&self, item: T, give_up: &dyn Fn() -> bool) -> Result<(), T> {
        let mut g = self.lock();
        while g.0.is_some() {
            if g.1 || give_up() {
                return Err(item);
            }
            g = self
                .changed
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if g.1 {
            return Err(item);
        }
        g.0 = Some(item);
        self.changed.notify_all();
        Ok(())
    }

    /// Takes the item, waiting up to `timeout`. `Err(())` once closed and empty.
    pub(crate) fn take(&self, timeout: Duration) -> Result<Option<T>, ()> {
        let mut g = self.lock();
        if g.0.is_none() && !g.1 {
            g = self
                .changed
                .wait_timeout(g, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match g.0.take() {
            Some(item) => {
                self.changed.notify_all();
                Ok(Some(item))
            }
            None if g.1 => Err(()),
            None => Ok(None),
        }
    }

    /// Whether an item waits in the slot.
    pub(crate) fn is_full(&self) -> bool {
        self.lock().0.is_some()
    }

    /// No more items will be put; a waiting item can still be taken.
    pub(crate) fn close(&self) {
        let mut g = self.lock();
        g.1 = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_replaces_and_close_drains() {
        let m = Mailbox::new();
        assert!(!m.is_full());
        assert!(!m.put_latest(1));
        assert!(m.is_full());
        assert!(m.put_latest(2));
        m.close();
        assert_eq!(m.take(Duration::from_millis(1)), Ok(Some(2)));
        assert_eq!(m.take(Duration::from_millis(1)), Err(()));
    }

    #[test]
    fn put_wait_gives_up() {
        let m = Mailbox::new();
        m.put_latest(1);
        assert_eq!(m.put_wait(2, &|| true), Err(2));
    }
}

//! [`OnDrop`]: the one cleanup-on-drop guard of the destinations.
//!
//! A put that has started leaving something behind (a temp file, a multipart upload, a
//! resumable session) arms a guard with the cleanup. The put disarms it once the object
//! is committed. Any other way out runs the cleanup: an error returned with `?`, a panic,
//! or the put's future being dropped (a cancelled job), which is the case no explicit
//! error path can cover. Cleanups that need the network spawn a task (Drop cannot wait).

/// Runs its closure when dropped, unless disarmed first.
#[must_use = "dropping the guard at once runs the cleanup at once"]
pub struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnDrop<F> {
    pub fn new(cleanup: F) -> Self {
        OnDrop(Some(cleanup))
    }

    /// The work is committed: nothing to clean up.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.0.take() {
            cleanup();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn cleans_up_unless_disarmed() {
        let ran = Cell::new(0);
        drop(OnDrop::new(|| ran.set(ran.get() + 1)));
        assert_eq!(ran.get(), 1);
        OnDrop::new(|| ran.set(ran.get() + 1)).disarm();
        assert_eq!(ran.get(), 1);
    }
}

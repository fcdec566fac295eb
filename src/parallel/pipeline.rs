//! Ordered parallel processing with bounded memory: items are produced in order on the calling
//! thread's helper, transformed on all cores, and consumed strictly in order. At most `window`
//! items are in flight at any time, so memory stays bounded whatever the disk size.

use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

/// Runs `work` on every item of `input` across `threads` worker threads and feeds the results
/// to `sink` in input order. The first error (from the input, `work` or `sink`) stops everything
/// and is returned. `window` bounds the number of items produced but not yet consumed.
pub fn ordered_map<T, U, I, W, S>(input: I, window: usize, work: W, mut sink: S) -> Result<()>
where
    T: Send,
    U: Send,
    I: Iterator<Item = Result<T>> + Send,
    W: Fn(T) -> Result<U> + Sync,
    S: FnMut(U) -> Result<()>,
{
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let window = window.max(threads * 2);
    // Tokens limit the items in flight: the producer takes one per item, the sink returns it.
    let (token_tx, token_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        token_tx.send(()).expect("token channel has room");
    }
    let (job_tx, job_rx) = sync_channel::<(u64, T)>(window);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<(u64, Result<U>)>(window);

    std::thread::scope(|scope| -> Result<()> {
        let producer = scope.spawn(move || -> Result<()> {
            for (seq, item) in input.enumerate() {
                if token_rx.recv().is_err() {
                    return Ok(()); // consumer stopped
                }
                let item = item?;
                if job_tx.send((seq as u64, item)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let work = &work;
            scope.spawn(move || loop {
                let next = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((seq, item))) = next else { return };
                if res_tx.send((seq, work(item))).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let outcome = consume(&res_rx, &token_tx, &mut sink);
        // Unblock and stop every thread before reporting.
        drop(res_rx);
        drop(token_tx);
        let produced = producer.join().expect("producer thread panicked");
        outcome.and(produced)
    })
}

fn consume<U, S: FnMut(U) -> Result<()>>(
    res_rx: &Receiver<(u64, Result<U>)>,
    token_tx: &std::sync::mpsc::SyncSender<()>,
    sink: &mut S,
) -> Result<()> {
    let mut pending: BTreeMap<u64, Result<U>> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, res) in res_rx.iter() {
        pending.insert(seq, res);
        while let Some(res) = pending.remove(&next) {
            sink(res?)?;
            next += 1;
            let _ = token_tx.send(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_propagates_errors() {
        let mut out = Vec::new();
        ordered_map(
            (0..1000u64).map(Ok),
            8,
            |x| Ok(x * 2),
            |y| {
                out.push(y);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, (0..1000u64).map(|x| x * 2).collect::<Vec<_>>());

        let err = ordered_map(
            (0..1000u64).map(Ok),
            8,
            |x| {
                if x == 500 {
                    anyhow::bail!("boom at {x}")
                } else {
                    Ok(x)
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "boom at 500");
    }
}

//! Re-reading the tokens file and the TLS pair while the gateway runs.
//!
//! Two triggers: the caller's (`sluice gateway` calls [`Reloader::reload`] on SIGHUP), which
//! re-reads both; and a watch of the files (`serve` polls the TLS pair's and the tokens file's
//! modification time, size and inode every
//! [`GatewayConfig::watch_interval`](super::GatewayConfig::watch_interval)), because Kubernetes
//! rotates a mounted secret in place and signals nobody. A change re-reads only what changed.
//!
//! Whatever fails to load is logged as an error and changes nothing: the tokens and the
//! certificate in use stay. A reload swaps the tokens atomically, so a request authenticated
//! just before keeps its [`Principal`](super::Principal) and finishes; only later requests see
//! the new set. `SLUICE_GATEWAY_TOKENS` cannot change in a running process: its tokens are kept
//! as they were parsed at start and the file's are added to them again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::auth::{Tokens, TokensError};
use super::tls::{TlsCertificate, TlsError};

/// Where the tokens come from: those fixed at start (the environment) and a file read again on
/// every reload.
#[derive(Debug, Clone, Default)]
pub struct TokenSource {
    fixed: Tokens,
    file: Option<PathBuf>,
}

impl TokenSource {
    /// `fixed` (parsed once, e.g. from `SLUICE_GATEWAY_TOKENS`) plus the entries of `file`.
    pub fn new(fixed: Tokens, file: Option<PathBuf>) -> Self {
        Self { fixed, file }
    }

    /// The file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The fixed tokens plus the file's as it reads now. Refuses an empty result: a file
    /// caught between truncation and rewrite must not lock every client out.
    pub fn load(&self) -> Result<Tokens, TokensError> {
        let mut tokens = self.fixed.clone();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| TokensError::Read { path: path.display().to_string(), source })?;
            tokens.add(&text, &format!("tokens file {}", path.display()))?;
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(tokens)
    }
}

/// What one [`Reloader::reload`] did, for the caller's log and for tests.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The tokens file's outcome (the names of the principals now accepted), if there is one.
    pub tokens: Option<Result<Vec<String>, TokensError>>,
    /// The TLS pair's outcome (the new certificate's fingerprint), if TLS is on.
    pub tls: Option<Result<String, TlsError>>,
}

/// Swaps in new tokens and TLS pairs. Cheap to clone; every clone acts on the same gateway.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub(crate) tokens: Arc<ArcSwap<Tokens>>,
    pub(crate) source: Option<Arc<TokenSource>>,
    pub(crate) tls: Option<Arc<TlsCertificate>>,
}

impl Reloader {
    /// Re-reads the tokens file (when tokens came from a [`TokenSource`] with a file) and the TLS
    /// pair (when TLS is on), logging each outcome; `why` names the trigger in the log.
    pub fn reload(&self, why: &str) -> ReloadReport {
        let tokens =
            self.source.as_ref().and_then(|source| source.file().map(|file| self.reload_tokens(source, file, why)));
        let tls = self.tls.as_ref().map(|tls| reload_tls(tls, why));
        ReloadReport { tokens, tls }
    }

    fn reload_tokens(&self, source: &TokenSource, file: &Path, why: &str) -> Result<Vec<String>, TokensError> {
        let file = file.display();
        match source.load() {
            Ok(tokens) => {
                let names: Vec<String> = tokens.principals().iter().map(|p| p.name().to_owned()).collect();
                self.tokens.store(Arc::new(tokens));
                tracing::info!(trigger = why, %file, tokens = %names.join(","), "tokens reloaded");
                Ok(names)
            }
            Err(e) => {
                // The error names the file and line, and the entry's name: never its token.
                tracing::error!(trigger = why, %file, error = %e, "tokens not reloaded: the previous tokens stay");
                Err(e)
            }
        }
    }

    /// Whether there is a file to watch (a TLS pair or a tokens file).
    pub(crate) fn watches_files(&self) -> bool {
        self.tls.is_some() || self.tokens_file().is_some()
    }

    fn tokens_file(&self) -> Option<PathBuf> {
        self.source.as_ref().and_then(|s| s.file().map(Path::to_path_buf))
    }

    /// Watches the TLS files and the tokens file until `stop`, reloading each when it changes.
    /// The tokens file's stamp is taken here, when the watch is made (not when it first runs): a
    /// rewrite between the two is still a change. One between the start-up read and this call is
    /// missed until the next change or SIGHUP; the gateway makes the watch right after loading.
    pub(crate) fn watch_files(self, interval: Duration, stop: CancellationToken) -> impl Future<Output = ()> + Send {
        let tls_files: Vec<PathBuf> = self.tls.as_ref().map(|tls| tls.files().paths().to_vec()).unwrap_or_default();
        let tokens_file: Vec<PathBuf> = self.tokens_file().into_iter().collect();
        let tls_watch = Watch::new(self.tls.as_ref().map(|tls| tls.stamps_at_load().to_vec()).unwrap_or_default());
        let tokens_watch = Watch::new(stamps(&tokens_file));
        self.watch_loop(interval, stop, (tls_files, tls_watch), (tokens_file, tokens_watch))
    }

    async fn watch_loop(
        self,
        interval: Duration,
        stop: CancellationToken,
        (tls_files, mut tls_watch): (Vec<PathBuf>, Watch),
        (tokens_file, mut tokens_watch): (Vec<PathBuf>, Watch),
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let (tls_now, tokens_now) = {
                let (tls_files, tokens_file) = (tls_files.clone(), tokens_file.clone());
                match tokio::task::spawn_blocking(move || (stamps(&tls_files), stamps(&tokens_file))).await {
                    Ok(now) => now,
                    Err(_) => continue,
                }
            };
            if let Some(tls) = &self.tls
                && tls_watch.changed(tls_now)
            {
                let _ = reload_tls(tls, "the files changed");
            }
            if let (Some(source), Some(file)) = (&self.source, tokens_file.first())
                && tokens_watch.changed(tokens_now)
            {
                let _ = self.reload_tokens(source, file, "the file changed");
            }
        }
    }
}

fn reload_tls(tls: &TlsCertificate, why: &str) -> Result<String, TlsError> {
    let files = tls.files();
    let result = tls.reload();
    match &result {
        Ok(fingerprint) => tracing::info!(
            trigger = why,
            cert = %files.cert.display(),
            sha256 = %fingerprint,
            "TLS certificate reloaded"
        ),
        Err(e) => tracing::error!(
            trigger = why,
            cert = %files.cert.display(),
            key = %files.key.display(),
            error = %e,
            "TLS certificate not reloaded: the previous one keeps serving"
        ),
    }
    result
}

/// What identifies a file's content cheaply (`None`: missing): its modification time and size,
/// and on Unix its inode, which changes when Kubernetes swaps a secret's symlink to new files
/// even if time (kept at a clock tick's resolution) and size happen to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub(crate) fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .map(|f| {
            // `metadata` follows symlinks: the stamp is the file's the name points to now.
            std::fs::metadata(f).ok().map(|m| Stamp { modified: m.modified().ok(), len: m.len(), inode: inode(&m) })
        })
        .collect()
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The reload decision of the file watch: reload when any stamp differs from the last seen.
/// Pure, so the decision is tested without files or time.
#[derive(Debug)]
struct Watch {
    last: Vec<Option<Stamp>>,
}

impl Watch {
    fn new(initial: Vec<Option<Stamp>>) -> Self {
        Self { last: initial }
    }

    /// True when `now` differs from the stamps last seen. They are remembered whether or not the
    /// reload that follows succeeds: a bad pair is reported once, not every poll, and the next
    /// write (the key after the certificate, a fixed file) triggers the next attempt.
    fn changed(&mut self, now: Vec<Option<Stamp>>) -> bool {
        if now == self.last {
            return false;
        }
        self.last = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::tests::{files_in, self_signed, write};
    use super::*;

    const A: &str = "web:aaaaaaaaaaaaaaaa:*";
    const B: &str = "etl:bbbbbbbbbbbbbbbb:user.*";
    const ENV: &str = "ops:cccccccccccccccc:*";

    fn stamp(secs: u64, len: u64) -> Option<Stamp> {
        Some(Stamp { modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)), len, inode: 7 })
    }

    #[test]
    fn the_watch_reloads_once_per_change() {
        let mut watch = Watch::new(vec![stamp(1, 10), stamp(1, 20)]);
        assert!(!watch.changed(vec![stamp(1, 10), stamp(1, 20)]), "nothing changed");
        assert!(watch.changed(vec![stamp(2, 10), stamp(1, 20)]), "the certificate was rewritten");
        assert!(!watch.changed(vec![stamp(2, 10), stamp(1, 20)]), "a failed attempt is not repeated every poll");
        assert!(watch.changed(vec![stamp(2, 10), stamp(2, 20)]), "then the key: another attempt");
        assert!(watch.changed(vec![stamp(2, 11), stamp(2, 20)]), "same second, new size");
        assert!(watch.changed(vec![None, stamp(2, 20)]), "a file gone is a change (its reload fails, logged)");
        assert!(watch.changed(vec![stamp(3, 11), stamp(2, 20)]), "and back");
        let swapped = stamp(3, 11).map(|s| Stamp { inode: 8, ..s });
        assert!(
            watch.changed(vec![swapped, stamp(2, 20)]),
            "a symlink swapped to a new file of the same time and size"
        );
    }

    fn tokens_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sluice-tokens-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).expect("write tokens");
        path
    }

    fn reloader(source: TokenSource, tls: Option<Arc<TlsCertificate>>) -> Reloader {
        let tokens = Arc::new(ArcSwap::from_pointee(source.load().expect("valid at start")));
        Reloader { tokens, source: Some(Arc::new(source)), tls }
    }

    fn accepts(reloader: &Reloader, entry: &str) -> bool {
        let token = entry.split(':').nth(1).expect("token");
        reloader.tokens.load().authenticate(Some(format!("Bearer {token}").as_bytes())).is_ok()
    }

    #[test]
    fn a_reload_replaces_the_files_tokens_and_keeps_the_environments() {
        let file = tokens_file(A);
        let env = Tokens::parse(ENV, "SLUICE_GATEWAY_TOKENS").expect("env");
        let r = reloader(TokenSource::new(env, Some(file.clone())), None);
        assert!(accepts(&r, A) && accepts(&r, ENV) && !accepts(&r, B));
        let held = Arc::clone(&r.tokens.load_full());

        std::fs::write(&file, format!("# rotated\n{B}\n")).expect("rewrite");
        let report = r.reload("test");
        assert_eq!(report.tokens.expect("a file").expect("reloaded"), ["etl", "ops"]);
        assert!(report.tls.is_none());
        assert!(!accepts(&r, A) && accepts(&r, B) && accepts(&r, ENV));
        // What a request took before the swap is untouched by it.
        assert!(held.authenticate(Some(b"Bearer aaaaaaaaaaaaaaaa")).is_ok());
    }

    #[test]
    fn a_bad_or_empty_file_keeps_the_previous_tokens() {
        let file = tokens_file(&format!("{A}\n{B}\n"));
        let r = reloader(TokenSource::new(Tokens::default(), Some(file.clone())), None);

        std::fs::write(&file, format!("{A}\nbroken:short:*\n")).expect("rewrite");
        let err = r.reload("test").tokens.expect("a file").expect_err("bad line").to_string();
        assert!(err.starts_with(&format!("tokens file {}, line 2 (\"broken\")", file.display())), "{err}");
        assert!(!err.contains("short"), "{err}");
        assert!(accepts(&r, A) && accepts(&r, B), "the previous tokens stay");

        std::fs::write(&file, "").expect("truncate");
        assert!(matches!(r.reload("test").tokens, Some(Err(TokensError::Empty))));
        std::fs::remove_file(&file).expect("rm");
        assert!(matches!(r.reload("test").tokens, Some(Err(TokensError::Read { .. }))));
        assert!(accepts(&r, A) && accepts(&r, B));
    }

    #[test]
    fn without_a_file_a_reload_touches_only_tls() {
        let env = Tokens::parse(ENV, "SLUICE_GATEWAY_TOKENS").expect("env");
        let files = files_in("reloader", &self_signed("one.test"));
        let tls = Arc::new(TlsCertificate::load(files.clone()).expect("tls"));
        let r = reloader(TokenSource::new(env, None), Some(Arc::clone(&tls)));
        let before = tls.fingerprint();
        write(&files, &self_signed("two.test"));
        let report = r.reload("test");
        assert!(report.tokens.is_none());
        let after = report.tls.expect("tls on").expect("reloaded");
        assert!(after != before && tls.fingerprint() == after);
        assert!(accepts(&r, ENV));
    }

    #[tokio::test]
    async fn the_watch_loop_reloads_a_rotated_pair() {
        let files = files_in("watch", &self_signed("one.test"));
        let tls = Arc::new(TlsCertificate::load(files.clone()).expect("tls"));
        let r = Reloader { tokens: Arc::default(), source: None, tls: Some(Arc::clone(&tls)) };
        let before = tls.fingerprint();
        let stop = CancellationToken::new();
        let task = tokio::spawn(r.watch_files(Duration::from_millis(20), stop.clone()));
        // Written within the clock tick of the load, possibly: the size differs (a longer name).
        write(&files, &self_signed("the-second-pair.test"));
        let rotated = tokio::time::timeout(Duration::from_secs(10), async {
            while tls.fingerprint() == before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        stop.cancel();
        task.await.expect("the watch stops");
        assert!(rotated.is_ok(), "the rotated pair was not picked up");
    }

    #[tokio::test]
    async fn the_watch_loop_reloads_a_rewritten_tokens_file() {
        let file = tokens_file(A);
        let r = reloader(TokenSource::new(Tokens::default(), Some(file.clone())), None);
        assert!(r.watches_files());
        let stop = CancellationToken::new();
        let task = tokio::spawn(r.clone().watch_files(Duration::from_millis(20), stop.clone()));
        // A longer file: its size differs even within the clock tick of the first write.
        std::fs::write(&file, format!("# rotated by the kubelet\n{B}\n")).expect("rewrite");
        let picked_up = tokio::time::timeout(Duration::from_secs(10), async {
            while !accepts(&r, B) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        stop.cancel();
        task.await.expect("the watch stops");
        assert!(picked_up.is_ok(), "the rewritten tokens file was not picked up");
        assert!(!accepts(&r, A));
    }
}

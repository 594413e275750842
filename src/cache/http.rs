//! The HTTP store: Bazel's HTTP cache protocol, as nginx with WebDAV, bazel-remote and
//! the commercial Bazel caches serve it. An entry is `URL/ac/KEY` (an `ActionResult`
//! message), a blob is `URL/cas/SHA256`; `GET` reads (404: not there), `PUT` writes,
//! `HEAD` asks whether a blob of more than [`ASK_FIRST`] is there before it is sent (a
//! smaller one is sent without asking: the question costs what sending it does).
//!
//! The cache's HTTP client: ureq (blocking, rustls; ARCHITECTURE.md says why; `service.rs`
//! uses it too, and [`tls`]). `https://` trusts the machine's CA certificates (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` honoured), or Mozilla's when the machine has none. Credentials come from the URL's user info (basic auth) or from
//! `RUNNER_CACHE_TOKEN` (a bearer token); they are sent as an `Authorization` header and
//! never appear in a message ([`Http::describe`] hides the password).
//!
//! Every request is bounded in time: 5 s to connect, [`IDLE`] for any one read or write
//! of the connection (a server that accepts and never answers, or stops reading what is
//! sent, ends the request then), and a whole-request bound that grows with the bytes
//! moved ([`budget`]), so that a server that trickles cannot hold a request forever
//! either. A blob is streamed both ways: a `PUT` reads the caller's reader as it sends
//! (with `Content-Length`), and a fetched blob is a reader of the response body.

use super::{BlobReader, Digest, Key, OpenError, Store, StoreError};
use base64::Engine as _;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest wait to open a connection.
pub const CONNECT: Duration = Duration::from_secs(5);
/// The longest wait for any one read or write on a connection.
pub const IDLE: Duration = Duration::from_secs(10);
/// A request may take this long plus the time its body needs at [`SLOWEST`].
const BASE: Duration = Duration::from_secs(60);
/// The slowest transfer rate a whole request is allowed: 1 MiB a second.
const SLOWEST: u64 = 1 << 20;
/// The largest entry read back: an `ActionResult` naming ~500,000 output files.
const ENTRY_LIMIT: u64 = 64 << 20;

/// A store on an HTTP server speaking Bazel's HTTP cache protocol.
pub struct Http {
    agent: ureq::Agent,
    /// `scheme://host[:port]/prefix/`: no user info, always ending in `/`.
    base: String,
    /// The URL as messages show it: the password replaced by `***`.
    shown: String,
    /// The `Authorization` header, from the URL's user info or the token.
    auth: Option<String>,
}

impl Http {
    /// The store at `url` (`http://` or `https://`, with an optional path prefix and
    /// user info), with `token` as a bearer token. Checks the URL only: nothing is sent.
    pub fn open(url: &str, token: Option<&str>) -> Result<Http, OpenError> {
        let invalid = |why: String| OpenError::Invalid {
            url: hide_password(url),
            why,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "an HTTP store's URL starts with http:// or https://".into(),
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL names no host".into()));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "a query (`?…`) or fragment (`#…`) has no place in a cache's URL".into(),
            ));
        }
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| invalid("the user info is not UTF-8 once decoded".into()))
        };
        let user = decode(parsed.username())?;
        let password = parsed.password().map(decode).transpose()?;
        let token = token.filter(|t| !t.is_empty());
        let auth =
            match (user.is_empty() && password.is_none(), token) {
                (true, None) => None,
                (true, Some(token)) => Some(format!("Bearer {token}")),
                (false, None) => {
                    let pair = format!("{user}:{}", password.unwrap_or_default());
                    Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ))
                }
                (false, Some(_)) => return Err(invalid(
                    "both a user in the URL and RUNNER_CACHE_TOKEN: give the credentials one way"
                        .into(),
                )),
            };
        let shown = hide_password(url);
        // Neither URL could fail: the parsed one is a valid http(s) URL with a host.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let mut base = parsed.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let mut config = ureq::Agent::config_builder();
        if parsed.scheme() == "https" {
            config = config.tls_config(tls());
        }
        let config = config
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(Some(CONNECT))
            .timeout_connect(Some(CONNECT))
            .timeout_per_read(Some(IDLE))
            .timeout_per_write(Some(IDLE))
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            Resolved::default(),
        );
        Ok(Http {
            agent,
            base,
            shown,
            auth,
        })
    }

    fn url(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}/{name}", self.base)
    }

    /// The request to `method` `url`, with the credentials and the time bound for a
    /// body of `bytes`.
    fn request<B>(&self, builder: ureq::RequestBuilder<B>, bytes: u64) -> ureq::RequestBuilder<B> {
        let builder = match &self.auth {
            Some(auth) => builder.header("Authorization", auth),
            None => builder,
        };
        builder.config().timeout_global(Some(budget(bytes))).build()
    }

    /// A ureq error as a [`StoreError`].
    fn failed(&self, e: ureq::Error, bytes: u64) -> StoreError {
        let store = self.describe();
        match e {
            ureq::Error::Timeout(which) => StoreError::TimedOut {
                store,
                seconds: bound(which, bytes).as_secs(),
            },
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                StoreError::TimedOut {
                    store,
                    seconds: IDLE.as_secs(),
                }
            }
            ureq::Error::Io(io) => StoreError::Unreachable {
                store,
                why: io.to_string(),
            },
            ureq::Error::HostNotFound => StoreError::Unreachable {
                store,
                why: "the host name was not found".into(),
            },
            ureq::Error::ConnectionFailed => StoreError::Unreachable {
                store,
                why: "the connection failed".into(),
            },
            other => StoreError::Refused {
                store,
                why: other.to_string(),
            },
        }
    }

    fn refused(&self, what: &str, status: ureq::http::StatusCode) -> StoreError {
        let hint = match status.as_u16() {
            401 | 403 => " (check the credentials: the URL's user info or RUNNER_CACHE_TOKEN)",
            300..=399 => " (redirects are not followed: give the URL it redirects to)",
            _ => "",
        };
        StoreError::Refused {
            store: self.describe(),
            why: format!("{what} answered {status}{hint}"),
        }
    }
}

impl Store for Http {
    fn lookup(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let request = self.request(self.agent.get(self.url("ac", &key.0)), ENTRY_LIMIT);
        let mut response = request.call().map_err(|e| self.failed(e, ENTRY_LIMIT))?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                drain(response);
                return Ok(None);
            }
            _ => return Err(self.refused(&format!("GET ac/{key}"), response.status())),
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(ENTRY_LIMIT)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => StoreError::Refused {
                    store: self.describe(),
                    why: format!("ac/{key} is larger than {} MiB", ENTRY_LIMIT >> 20),
                },
                e => self.failed(e, ENTRY_LIMIT),
            })?;
        Ok(Some(body))
    }

    fn fetch_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let name = digest.hex();
        let request = self.request(self.agent.get(self.url("cas", &name)), digest.size);
        let response = request.call().map_err(|e| self.failed(e, digest.size))?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                drain(response);
                return Ok(None);
            }
            _ => return Err(self.refused(&format!("GET cas/{name}"), response.status())),
        }
        Ok(Some(Box::new(Body {
            inner: response.into_body().into_reader(),
            store: self.describe(),
            bytes: digest.size,
        })))
    }

    fn store_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<(), StoreError> {
        let name = digest.hex();
        let url = self.url("cas", &name);
        if digest.size > ASK_FIRST {
            let head = self.request(self.agent.head(&url), 0);
            let response = head.call().map_err(|e| self.failed(e, 0))?;
            match response.status().as_u16() {
                200..=299 => return Ok(()),
                // Not there; a server that does not answer HEAD (405, 501) is sent it too.
                404 | 405 | 501 => {}
                _ => return Err(self.refused(&format!("HEAD cas/{name}"), response.status())),
            }
        }
        let failure = Arc::new(Mutex::new(None));
        let mut body = Exact {
            inner: data,
            left: digest.size,
            failure: Arc::clone(&failure),
        };
        let put = self
            .request(self.agent.put(&url), digest.size)
            .header("Content-Length", digest.size)
            .header("Content-Type", "application/octet-stream");
        let sent = put.send(ureq::SendBody::from_reader(&mut body));
        if let Some(source) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(StoreError::Io {
                what: format!("cannot read the blob {name} to store it"),
                source,
            });
        }
        let response = sent.map_err(|e| self.failed(e, digest.size))?;
        match response.status().as_u16() {
            200..=299 => {
                drain(response);
                Ok(())
            }
            _ => Err(self.refused(&format!("PUT cas/{name}"), response.status())),
        }
    }

    fn store_entry(&self, key: &Key, entry: &[u8]) -> Result<(), StoreError> {
        let bytes = entry.len() as u64;
        let put = self
            .request(self.agent.put(self.url("ac", &key.0)), bytes)
            .header("Content-Type", "application/octet-stream");
        let response = put.send(entry).map_err(|e| self.failed(e, bytes))?;
        match response.status().as_u16() {
            200..=299 => {
                drain(response);
                Ok(())
            }
            _ => Err(self.refused(&format!("PUT ac/{key}"), response.status())),
        }
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// The size above which a blob is asked for (`HEAD`) before it is sent: below it, a
/// request that may be useless costs less than one more round trip for every blob of a
/// run that misses (Bazel's own HTTP cache client sends every blob without asking).
const ASK_FIRST: u64 = 1 << 20;

/// ureq's resolver, remembering its answer for [`RESOLVED_FOR`]: ureq resolves the
/// server's name before every request, pooled connection or not, and its default
/// resolver does so in a thread of its own when the resolve has a timeout (as here:
/// [`CONNECT`]) — a thread started per request, four per task on a run that misses
/// everything (counted with strace: 1,007 threads for 200 tasks, 205 without a cache).
/// A cache talks to one server, so one answer serves the run.
#[derive(Debug, Default)]
struct Resolved {
    inner: ureq::unversioned::resolver::DefaultResolver,
    known: Mutex<Option<Known>>,
}

/// A resolver's answer: for which scheme and authority, and when.
#[derive(Debug)]
struct Known {
    name: String,
    at: std::time::Instant,
    addrs: ureq::unversioned::resolver::ResolvedSocketAddrs,
}

/// How long [`Resolved`] trusts an answer (a server whose address changes is found
/// again within this).
const RESOLVED_FOR: Duration = Duration::from_secs(60);

impl ureq::unversioned::resolver::Resolver for Resolved {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let name = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = known.as_ref() {
            if k.name == name && k.at.elapsed() < RESOLVED_FOR {
                return Ok(k.addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *known = Some(Known {
            name,
            at: std::time::Instant::now(),
            addrs: addrs.clone(),
        });
        Ok(addrs)
    }
}

/// Reads what is left of a short answer's body (a 404 page, a PUT's acknowledgement), so
/// that its connection goes back to the agent's pool: ureq keeps a connection only once
/// its response was read to the end, and without this every task's lookup and store
/// opened connections of their own (one per task, counted with strace). A body larger
/// than [`DRAIN_LIMIT`] is left, and its connection with it.
fn drain(mut response: ureq::http::Response<ureq::Body>) {
    let _ = response
        .body_mut()
        .with_config()
        .limit(DRAIN_LIMIT)
        .read_to_vec();
}

/// The most bytes of an answer's body [`drain`] reads.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// TLS trusting the machine's CA certificates (the system's store, or `SSL_CERT_FILE`
/// / `SSL_CERT_DIR` when set), or, when none can be read, Mozilla's roots (webpki).
pub(crate) fn tls() -> ureq::tls::TlsConfig {
    let found = rustls_native_certs::load_native_certs();
    let roots: Vec<_> = found
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let roots = if roots.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&roots)
    };
    ureq::tls::TlsConfig::builder().root_certs(roots).build()
}

/// The longest a request moving `bytes` may take: [`BASE`], plus the bytes at 1 MiB/s.
pub fn budget(bytes: u64) -> Duration {
    BASE + Duration::from_secs(bytes / SLOWEST)
}

/// The bound a timeout of ureq's stands for, in what this store configured.
fn bound(which: ureq::Timeout, bytes: u64) -> Duration {
    match which {
        ureq::Timeout::Resolve | ureq::Timeout::Connect => CONNECT,
        ureq::Timeout::PerRead | ureq::Timeout::PerWrite => IDLE,
        _ => budget(bytes),
    }
}

/// `url` with the password of its user info (if any) replaced by `***`.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The caller's reader, giving exactly `left` bytes: a reader that ends early (a file
/// that shrank while it was sent) is an error, and that error is kept aside so that
/// it is told as the runner's, not the server's.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    failure: Arc<Mutex<Option<io::Error>>>,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let result = match self.inner.read(&mut buf[..want]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("it ended {} bytes short", self.left),
            )),
            other => other,
        };
        match result {
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Err(io::Error::new(kind, "reading the blob to send failed"))
            }
        }
    }
}

/// A blob's response body being read: a timeout or a dropped connection says which
/// store and which bound.
struct Body {
    inner: ureq::BodyReader<'static>,
    store: String,
    bytes: u64,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = e.kind();
            match ureq::Error::from(e) {
                ureq::Error::Timeout(which) => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not answer within {} s",
                        self.store,
                        bound(which, self.bytes).as_secs()
                    ),
                ),
                other => io::Error::new(kind, format!("reading from {}: {other}", self.store)),
            }
        })
    }
}

/// The test servers the integration tests use too (tests/it/nginx.rs).
#[cfg(test)]
#[path = "../../tests/it/nginx.rs"]
#[allow(dead_code)]
mod test_servers;

#[cfg(test)]
mod tests {
    use super::super::entry::{Entry, OutputFile};
    use super::*;
    use std::path::PathBuf;
    use std::time::{Instant, UNIX_EPOCH};

    use super::test_servers::{answering_server, files_under, free_port, silent_server, Nginx};

    fn sha256_hex(bytes: &[u8]) -> String {
        Digest::of(bytes).hex()
    }

    fn read_all(mut reader: BlobReader) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    #[test]
    fn blobs_and_entries_round_trip_through_nginx_under_a_path_prefix() {
        let nginx = Nginx::start(None);
        // A prefix without the trailing slash, and one with it: the same store.
        let store = Http::open(&nginx.url("cache"), None).unwrap();
        let again = Http::open(&nginx.url("cache/"), None).unwrap();
        let bytes = b"the output of a task\n".repeat(1000);
        let digest = Digest::of(&bytes);
        assert!(store.fetch_blob(&digest).unwrap().is_none());
        store.store_blob(&digest, &mut &bytes[..]).unwrap();
        assert_eq!(
            read_all(again.fetch_blob(&digest).unwrap().unwrap()).unwrap(),
            bytes
        );
        // Stored again: a small blob is sent again without asking first (no HEAD).
        again.store_blob(&digest, &mut &bytes[..]).unwrap();
        let requests = nginx.requests_once(|r| r.len() >= 4);
        let puts: Vec<_> = requests
            .iter()
            .filter(|r| r.starts_with("PUT /cache/cas/"))
            .collect();
        assert_eq!(puts.len(), 2, "{requests:?}");
        assert!(
            !requests.iter().any(|r| r.starts_with("HEAD ")),
            "{requests:?}"
        );
        // Sent with its length, not chunked.
        assert!(
            puts[0].contains(&format!("len={} te=-", bytes.len())),
            "{}",
            puts[0]
        );
        // A blob over ASK_FIRST stored again: a HEAD finds it, nothing is sent.
        let large = vec![7u8; usize::try_from(ASK_FIRST).unwrap() + 1];
        let digest = Digest::of(&large);
        store.store_blob(&digest, &mut &large[..]).unwrap();
        again.store_blob(&digest, &mut &large[..]).unwrap();
        let name = format!("/cache/cas/{}", digest.hex());
        let on = |requests: &[String], method: &str| {
            requests
                .iter()
                .filter(|r| r.starts_with(&format!("{method} {name} ")))
                .count()
        };
        let requests = nginx.requests_once(|r| on(r, "HEAD") >= 2);
        assert_eq!(
            (on(&requests, "HEAD"), on(&requests, "PUT")),
            (2, 1),
            "{requests:?}"
        );

        let key = Key("5a".repeat(32));
        assert_eq!(store.lookup(&key).unwrap(), None);
        store.store_entry(&key, b"an entry").unwrap();
        assert_eq!(
            again.lookup(&key).unwrap().as_deref(),
            Some(&b"an entry"[..])
        );
        // Replaced by a second writer.
        again.store_entry(&key, b"the same entry").unwrap();
        assert_eq!(
            store.lookup(&key).unwrap().as_deref(),
            Some(&b"the same entry"[..])
        );

        // On the server: ac/KEY, and cas/ names that are their files' SHA-256.
        let root = nginx.root().join("cache");
        assert!(root.join("ac").join(&key.0).is_file());
        let blobs = files_under(&root.join("cas"));
        assert_eq!(blobs.len(), 2);
        for blob in blobs {
            let content = std::fs::read(root.join("cas").join(&blob)).unwrap();
            assert_eq!(blob.to_str().unwrap(), sha256_hex(&content));
        }
    }

    #[test]
    fn an_empty_blob_round_trips() {
        let nginx = Nginx::start(None);
        let store = Http::open(&nginx.url(""), None).unwrap();
        let digest = Digest::of(b"");
        store.store_blob(&digest, &mut &b""[..]).unwrap();
        assert_eq!(
            read_all(store.fetch_blob(&digest).unwrap().unwrap()).unwrap(),
            b""
        );
    }

    /// A reader of `size` bytes made as they are read: the blob is never in memory.
    struct Pattern {
        left: u64,
    }

    impl Read for Pattern {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = (self.left as usize + i) as u8;
            }
            self.left -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_large_blob_is_streamed_both_ways() {
        use sha2::Digest as _;
        let nginx = Nginx::start(None);
        let store = Http::open(&nginx.url(""), None).unwrap();
        let size = 64 << 20;
        let mut hasher = sha2::Sha256::new();
        io::copy(&mut Pattern { left: size }, &mut hasher).unwrap();
        let digest = Digest {
            sha256: hasher.finalize().into(),
            size,
        };
        store
            .store_blob(&digest, &mut Pattern { left: size })
            .unwrap();
        let mut back = sha2::Sha256::new();
        let copied = io::copy(&mut store.fetch_blob(&digest).unwrap().unwrap(), &mut back).unwrap();
        assert_eq!(copied, size);
        assert_eq!(<[u8; 32]>::from(back.finalize()), digest.sha256);
    }

    #[test]
    fn a_reader_that_ends_early_is_the_runners_error_not_the_servers() {
        let nginx = Nginx::start(None);
        let store = Http::open(&nginx.url(""), None).unwrap();
        let mut digest = Digest::of(b"twelve bytes");
        digest.size = 100;
        let error = store
            .store_blob(&digest, &mut &b"twelve bytes"[..])
            .unwrap_err();
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("88 bytes short"), "{error}");
    }

    /// An entry as the runner writes it, stored on nginx, decoded from nginx's file by
    /// `protoc` with the official `remote_execution.proto` (tests/fixtures/proto).
    #[test]
    fn an_entry_on_the_server_decodes_with_the_official_proto() {
        let nginx = Nginx::start(None);
        let store = Http::open(&nginx.url("cache/"), None).unwrap();
        let output = b"#!/bin/sh\necho built\n";
        let printed = b"built 1 file\n";
        let entry = Entry {
            files: vec![OutputFile {
                path: PathBuf::from("out/tool.sh"),
                digest: Digest::of(output),
                executable: true,
            }],
            stdout: Some(Digest::of(printed)),
            stderr: None,
            host: "ci-7".to_string(),
            stored: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        let key = Key("c3".repeat(32));
        store
            .store_entry(&key, &entry.encode(&key, Some(b"a secret")))
            .unwrap();
        let on_disk = nginx.root().join("cache/ac").join(&key.0);
        let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proto");
        let decoded = std::process::Command::new("protoc")
            .arg(format!("-I{protos}"))
            .arg("-I/usr/include")
            .arg("--decode=build.bazel.remote.execution.v2.ActionResult")
            .arg("build/bazel/remote/execution/v2/remote_execution.proto")
            .current_dir(protos)
            .stdin(std::fs::File::open(&on_disk).unwrap())
            .output()
            .expect("protoc is not installed: run scripts/test, which installs protobuf-compiler");
        let text = String::from_utf8_lossy(&decoded.stdout);
        assert!(
            decoded.status.success(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );
        let output_hash = sha256_hex(output);
        let printed_hash = sha256_hex(printed);
        for expected in [
            "output_files {".to_string(),
            "path: \"out/tool.sh\"".to_string(),
            format!("hash: \"{output_hash}\""),
            format!("size_bytes: {}", output.len()),
            "is_executable: true".to_string(),
            "stdout_digest {".to_string(),
            format!("hash: \"{printed_hash}\""),
            format!("size_bytes: {}", printed.len()),
            "worker: \"runner@ci-7\"".to_string(),
            "seconds: 1800000000".to_string(),
            "auxiliary_metadata {".to_string(),
            "type_url: \"type.googleapis.com/runner.cache.v1.Mac\"".to_string(),
        ] {
            assert!(text.contains(&expected), "no `{expected}` in:\n{text}");
        }
        // Nothing protoc did not know: every field is the official proto's.
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())),
            "{text}"
        );
    }

    #[test]
    fn basic_auth_from_the_url_and_a_bearer_token_reach_the_server() {
        let basic = Nginx::start(Some("Basic dXNlcjpwQHNz"));
        // `p@ss` percent-encoded in the URL, decoded before it is sent.
        let url = format!("http://user:p%40ss@127.0.0.1:{}/", basic.port);
        let store = Http::open(&url, None).unwrap();
        assert_eq!(
            store.describe(),
            format!("http://user:***@127.0.0.1:{}/", basic.port)
        );
        let key = Key("0b".repeat(32));
        store.store_entry(&key, b"entry").unwrap();
        assert_eq!(store.lookup(&key).unwrap().as_deref(), Some(&b"entry"[..]));
        let digest = Digest::of(b"blob");
        store.store_blob(&digest, &mut &b"blob"[..]).unwrap();
        // Without the credentials: refused, with a hint.
        let anonymous = Http::open(&basic.url(""), None).unwrap();
        let error = anonymous.lookup(&key).unwrap_err();
        assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
        assert!(error.to_string().contains("401"), "{error}");
        assert!(error.to_string().contains("credentials"), "{error}");
        // No message names the password.
        assert!(!error.to_string().contains("p@ss") && !error.to_string().contains("p%40ss"));

        let bearer = Nginx::start(Some("Bearer s3cr3t-t0ken"));
        let store = Http::open(&bearer.url(""), Some("s3cr3t-t0ken")).unwrap();
        store.store_entry(&key, b"entry").unwrap();
        assert_eq!(store.lookup(&key).unwrap().as_deref(), Some(&b"entry"[..]));
        assert!(!store.describe().contains("s3cr3t"));
        let wrong = Http::open(&bearer.url(""), Some("another")).unwrap();
        assert!(matches!(
            wrong.lookup(&key),
            Err(StoreError::Refused { .. })
        ));
    }

    #[test]
    fn https_trusts_the_certificates_ssl_cert_file_names() {
        let nginx = Nginx::start_tls();
        let key = Key("1c".repeat(32));
        // Mozilla's roots or the system's do not know this certificate.
        let untrusted = Http::open(&nginx.url(""), None).unwrap();
        let error = untrusted.store_entry(&key, b"entry").unwrap_err();
        assert!(error.to_string().contains("certificate"), "{error}");
        // SAFETY: nextest runs each test in its own process; no other thread reads it.
        unsafe { std::env::set_var("SSL_CERT_FILE", nginx.certificate()) };
        let store = Http::open(&nginx.url("cache/"), None).unwrap();
        store.store_entry(&key, b"entry").unwrap();
        assert_eq!(store.lookup(&key).unwrap().as_deref(), Some(&b"entry"[..]));
    }

    #[test]
    fn credentials_given_two_ways_are_refused_at_open() {
        let error = Http::open("http://u:secret@127.0.0.1:1/", Some("token"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("RUNNER_CACHE_TOKEN"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(Http::open("http://127.0.0.1:1/?x=1", None).is_err());
    }

    #[test]
    fn the_password_is_hidden_from_descriptions() {
        assert_eq!(hide_password("https://u:pw@h:1/c/"), "https://u:***@h:1/c/");
        assert_eq!(hide_password("https://u@h/c"), "https://u@h/c");
        assert_eq!(hide_password("http://h/a@b"), "http://h/a@b");
    }

    /// Whatever ends the request must end it well under 30 s.
    fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        assert!(took < IDLE + Duration::from_secs(5), "{what} took {took:?}");
        result
    }

    #[test]
    fn a_server_that_never_answers_times_out_every_request() {
        let port = silent_server();
        let store = Http::open(&format!("http://127.0.0.1:{port}/"), None).unwrap();
        let error = bounded("a lookup", || store.lookup(&Key("00".repeat(32)))).unwrap_err();
        assert!(
            matches!(error, StoreError::TimedOut { seconds: 10, .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("did not answer within 10 s"),
            "{error}"
        );
    }

    #[test]
    fn a_server_that_stops_reading_a_blob_ends_its_upload() {
        // HEAD: 404 (keep-alive); PUT: its head read, then nothing more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    if head.starts_with(b"HEAD") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    } else {
                        break;
                    }
                }
                held.push(stream);
            }
        });
        use std::io::Write as _;
        let store = Http::open(&format!("http://127.0.0.1:{port}/"), None).unwrap();
        // A blob bigger than any socket buffer: the PUT's writes block, and end. Not
        // within one idle period: a write that blocks after sending part of its bytes
        // returns that part when its 10 s are up, and only the next write fails
        // (measured: 30 s on loopback); the whole-request bound caps it anyway.
        let size = 64 << 20;
        let digest = Digest {
            sha256: [7; 32],
            size,
        };
        let start = Instant::now();
        let error = store
            .store_blob(&digest, &mut Pattern { left: size })
            .unwrap_err();
        let took = start.elapsed();
        assert!(took < IDLE * 4 && took < budget(size), "took {took:?}");
        assert!(
            matches!(error, StoreError::TimedOut { seconds: 10, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_blob_whose_body_stalls_ends_its_reader() {
        // Headers promise 100 bytes; 10 come, then nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                held.push(stream);
            }
        });
        use std::io::Write as _;
        let store = Http::open(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let mut digest = Digest::of(b"x");
        digest.size = 100;
        let reader = store.fetch_blob(&digest).unwrap().unwrap();
        let error = bounded("reading the body", || read_all(reader)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(
            error.to_string().contains("did not answer within 10 s"),
            "{error}"
        );
    }

    #[test]
    fn a_server_answering_500_is_refused_with_its_status() {
        let port = answering_server("500 Internal Server Error");
        let store = Http::open(&format!("http://127.0.0.1:{port}/"), None).unwrap();
        let error = bounded("a lookup", || store.lookup(&Key("00".repeat(32)))).unwrap_err();
        assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
        assert!(error.to_string().contains("500"), "{error}");
        let error =
            bounded("a store", || store.store_entry(&Key("00".repeat(32)), b"e")).unwrap_err();
        assert!(error.to_string().contains("500"), "{error}");
        let digest = Digest::of(b"blob");
        let error = bounded("a blob", || store.store_blob(&digest, &mut &b"blob"[..])).unwrap_err();
        assert!(error.to_string().contains("500"), "{error}");
    }

    #[test]
    fn a_closed_port_is_unreachable_at_once() {
        let port = free_port();
        let store = Http::open(&format!("http://127.0.0.1:{port}/"), None).unwrap();
        let start = Instant::now();
        let error = store.lookup(&Key("00".repeat(32))).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(matches!(error, StoreError::Unreachable { .. }), "{error:?}");
    }
}

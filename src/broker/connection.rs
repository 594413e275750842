//! The connection to Redis: connecting (failing within seconds when the broker cannot be
//! used at all), and running a command again after a dropped connection, with backoff,
//! saying when the broker went away and when it is back.
//!
//! Nothing here knows what the runner stores: `runs.rs` and `tasks.rs` build the
//! commands.

use super::{redact, BrokerError};
use redis::{Connection, RedisError};
use std::time::{Duration, Instant};

/// A connection that reconnects with backoff when Redis goes away, and says so.
pub struct Broker {
    client: redis::Client,
    conn: Option<Connection>,
    /// The connection's id on the server (`CLIENT ID`), once asked; forgotten with the
    /// connection.
    id: Option<u64>,
    /// How many times the connection was replaced (a dropped connection, a cut read):
    /// a command whose reply was lost may have run ([`Broker::generation`]).
    generation: u64,
    url: String,
    read_timeout: Duration,
    /// Told when the broker is unreachable and when it is back.
    say: Box<dyn Fn(String) + Send>,
    /// Asked between reconnect attempts: true to give up.
    give_up: Box<dyn Fn() -> bool + Send>,
}

fn describe(url: &str, e: &RedisError) -> String {
    let text = e.to_string().replace(url, &redact(url));
    let tls = url.starts_with("rediss://");
    let hint = if e.is_io_error() && tls {
        " (does the server speak TLS on that port?)"
    } else if e.is_io_error() && text.contains("reset by peer") {
        " (if the server expects TLS, use rediss://)"
    } else {
        ""
    };
    format!("broker {}: {text}{hint}", redact(url))
}

impl Broker {
    /// Connects now, failing within seconds if the broker is unreachable or refuses us.
    pub fn connect(url: &str, read_timeout: Duration) -> Result<Broker, BrokerError> {
        // rediss:// needs a TLS crypto provider chosen once per process; a second
        // install (another connection) is refused, and that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(url).map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        let conn =
            open(&client, read_timeout).map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        Ok(Broker {
            client,
            conn: Some(conn),
            id: None,
            generation: 0,
            url: url.to_string(),
            read_timeout,
            say: Box::new(|_| {}),
            give_up: Box::new(|| false),
        })
    }

    pub fn on_trouble(
        mut self,
        say: impl Fn(String) + Send + 'static,
        give_up: impl Fn() -> bool + Send + 'static,
    ) -> Broker {
        self.say = Box::new(say);
        self.give_up = Box::new(give_up);
        self
    }

    /// Runs `f` on the connection, reconnecting with backoff after a connection error.
    /// Server errors (a bad command, a script error) are returned at once. Every typed
    /// method (`runs.rs`, `tasks.rs`) goes through here, so each one survives a Redis
    /// restart. While the broker is away it says so, and again now and then, so that a
    /// waiting process always says what it waits for; `give_up` is asked every 50 ms.
    pub(super) fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let mut delay = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        let mut next_word = Duration::from_secs(5);
        loop {
            if self.conn.is_none() {
                match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(conn) => {
                        let _ = conn.set_read_timeout(Some(self.read_timeout));
                        self.conn = Some(conn);
                    }
                    Err(e) if is_fatal(&e) => {
                        return Err(BrokerError::Fatal(describe(&self.url, &e)))
                    }
                    Err(_) => {}
                }
            }
            if let Some(conn) = &mut self.conn {
                match f(conn) {
                    Ok(v) => {
                        if let Some(since) = down_since {
                            (self.say)(format!(
                                "broker {} is back after {}",
                                redact(&self.url),
                                crate::task::duration(since.elapsed())
                            ));
                        }
                        return Ok(v);
                    }
                    // A signal (SIGTERM to this process) cut a read that has a timeout:
                    // not the broker's doing. The reply may still come, so the
                    // connection is replaced, without a word.
                    Err(e) if is_interrupted(&e) => {
                        self.conn = None;
                        self.id = None;
                        self.generation += 1;
                        if (self.give_up)() {
                            return Err(BrokerError::Stopped);
                        }
                        continue;
                    }
                    Err(e) if is_connection_error(&e) => {
                        self.conn = None;
                        self.id = None;
                        self.generation += 1;
                        if down_since.is_none() {
                            (self.say)(format!(
                                "{} (unreachable); reconnecting, retrying every {} at most",
                                describe(&self.url, &e),
                                crate::task::duration(MAX_DELAY)
                            ));
                        }
                    }
                    Err(e) if is_loading(&e) => {}
                    Err(e) => return Err(BrokerError::Fatal(describe(&self.url, &e))),
                }
            }
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= next_word {
                (self.say)(format!(
                    "broker {} still unreachable after {}; reconnecting",
                    redact(&self.url),
                    crate::task::duration(since.elapsed())
                ));
                next_word = (next_word * 3).min(Duration::from_secs(300));
            }
            let wake = Instant::now() + delay;
            while Instant::now() < wake {
                if (self.give_up)() {
                    return Err(BrokerError::Stopped);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

impl Broker {
    /// This connection's id on the server, for another connection to end a blocking
    /// read of this one early ([`unblock`](Broker::unblock)). Asked once per connection
    /// (again after a reconnect); `None` if the broker cannot say.
    pub fn client_id(&mut self) -> Option<u64> {
        if self.id.is_none() {
            // Asked on the connection as it is: `call` would reconnect, and the id of a
            // connection replaced meanwhile would be forgotten with it.
            let id = self
                .conn
                .as_mut()
                .and_then(|c| redis::cmd("CLIENT").arg("ID").query::<u64>(c).ok());
            self.id = id;
        }
        self.id
    }

    /// How many times the connection was replaced so far. A command sent on a
    /// connection that then dropped may have run with its reply lost, and `call` ran it
    /// again: a caller whose command is not the same twice (a read of new entries) sees
    /// the count change, and looks for what the lost reply held.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Ends the blocking read that the connection `id` waits in (as if its time ran
    /// out); nothing if it waits in none. Not retried: a read it misses ends by itself.
    pub fn unblock(&mut self, id: u64) {
        if let Some(c) = self.conn.as_mut() {
            let _ = redis::cmd("CLIENT").arg("UNBLOCK").arg(id).query::<i64>(c);
        }
    }
}

/// A new connection that has answered PING (a wrong password may only show on the
/// first command). A read cut short by EINTR is tried again, as [`Broker::call`] does: it
/// says nothing about the broker, and under load it happens (it failed a worker's
/// connection while its consumers held tasks, which then waited for another worker).
fn open(client: &redis::Client, read_timeout: Duration) -> redis::RedisResult<Connection> {
    let mut interrupted = 0;
    loop {
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .and_then(|mut conn| {
                conn.set_read_timeout(Some(read_timeout))?;
                redis::cmd("PING").query::<String>(&mut conn)?;
                Ok(conn)
            });
        match conn {
            Err(e) if is_interrupted(&e) && interrupted < 10 => interrupted += 1,
            conn => return conn,
        }
    }
}

/// The longest wait between two reconnection attempts.
const MAX_DELAY: Duration = Duration::from_secs(2);

fn is_interrupted(e: &RedisError) -> bool {
    // Not every path of the redis crate keeps the io::Error as the source (a worker sent
    // TERM while reading was still reported "Interrupted system call (os error 4)"), so
    // its text is the fallback.
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::Interrupted)
        || (e.is_io_error() && e.to_string().contains("(os error 4)"))
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
}

fn is_loading(e: &RedisError) -> bool {
    e.to_string().contains("LOADING")
}

fn is_fatal(e: &RedisError) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("auth")
        || text.contains("password")
        || text.contains("tls")
        || text.contains("certificate")
}

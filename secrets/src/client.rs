//! Talking to the agent: connect only to a socket that is ours (a socket
//! someone else placed would collect our secrets), send a request, map a
//! failure back to an [`Error`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::protocol::{Failure, Request, Response, Status, MAX_LINE};
use crate::Error;

pub struct Client {
    socket: PathBuf,
    reader: BufReader<std::io::Take<UnixStream>>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the agent at `socket`, after checking that the socket
    /// and its folder belong to this user.
    pub fn connect(socket: &Path) -> Result<Client, Error> {
        let not_running = || {
            Error::NotRunning(format!(
                "no agent answers on {}: start one with `cvl agent`",
                socket.display()
            ))
        };
        let meta = match std::fs::symlink_metadata(socket) {
            Ok(m) => m,
            Err(_) => return Err(not_running()),
        };
        let me = crate::euid();
        let dir_meta = socket.parent().and_then(|d| std::fs::metadata(d).ok());
        // The folder must be ours or root's, and not writable by others
        // unless sticky (as /tmp is): else someone could swap the socket.
        let foreign_dir = dir_meta.as_ref().is_some_and(|d| {
            let owner_ok = d.uid() == me || d.uid() == 0;
            let others_write = d.mode() & 0o022 != 0;
            let sticky = d.mode() & 0o1000 != 0;
            !owner_ok || (others_write && !sticky)
        });
        if meta.uid() != me || foreign_dir {
            return Err(Error::Foreign(format!(
                "the agent socket {} belongs to uid {} (you are uid {me}) or sits in a folder \
                 others can write: refusing to use it; remove it, or set CVL_AGENT_SOCK to a \
                 socket of your own",
                socket.display(),
                meta.uid()
            )));
        }
        let stream = UnixStream::connect(socket).map_err(|_| not_running())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| Error::Io(e.to_string()))?;
        let writer = stream.try_clone().map_err(|e| Error::Io(e.to_string()))?;
        Ok(Client {
            socket: socket.to_path_buf(),
            reader: BufReader::new(std::io::Read::take(stream, u64::MAX)),
            writer,
        })
    }

    /// Sends `request` and reads the answer; a failure becomes an error.
    pub fn call(&mut self, request: &Request) -> Result<Response, Error> {
        let mut line = Zeroizing::new(serde_json::to_vec(request).expect("requests serialize"));
        line.push(b'\n');
        let lost = |e: std::io::Error| {
            Error::Io(format!(
                "the agent on {} stopped answering: {e}",
                self.socket.display()
            ))
        };
        self.writer.write_all(&line).map_err(lost)?;
        let mut answer = Zeroizing::new(String::new());
        self.reader.get_mut().set_limit(MAX_LINE);
        if self.reader.read_line(&mut answer).map_err(lost)? == 0 {
            return Err(Error::Io(format!(
                "the agent on {} closed the connection (it refuses other users' processes)",
                self.socket.display()
            )));
        }
        let response: Response = serde_json::from_str(&answer)
            .map_err(|e| Error::Protocol(format!("the agent's answer does not parse: {e}")))?;
        match response.failure {
            None => Ok(response),
            Some(kind) => {
                let m = response.message.clone();
                Err(match kind {
                    Failure::Locked => Error::Locked(m),
                    Failure::NoVault => Error::NoVault(m),
                    Failure::WrongPassphrase => Error::WrongPassphrase(m),
                    Failure::Damaged => Error::Damaged(m),
                    Failure::Newer => Error::Newer(m),
                    Failure::Io | Failure::BadRequest => Error::Io(m),
                })
            }
        }
    }

    pub fn status(&mut self) -> Result<Status, Error> {
        self.call(&Request::Status)?
            .status
            .take()
            .ok_or_else(|| Error::Protocol("the agent sent no status".into()))
    }

    /// The values the agent has among `keys`.
    pub fn get(&mut self, keys: &[String]) -> Result<BTreeMap<String, Zeroizing<String>>, Error> {
        let mut response = self.call(&Request::Get {
            keys: keys.to_vec(),
        })?;
        Ok(std::mem::take(&mut response.values))
    }
}

//! One host reached through the system's OpenSSH client (`ssh`), one multiplexed connection
//! per host (`ControlMaster`): every remote call is a channel on it, retried with back-off
//! when ssh itself fails (exit status 255: no connection, a dropped master), and a failure
//! names the host and the command.
//!
//! Every ssh process runs in its own process group, so a Ctrl-C at the terminal reaches the
//! runner (which then tears down) and not a teardown's own calls. With `dry_run`, nothing is
//! run: every command is printed, as `[host] command`, and answered with empty output.

use super::inventory::Host;
use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// ssh's own exit status for its failures (a remote command's status is passed through).
const SSH_FAILED: i32 = 255;

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A shell kept open on the host over one channel: commands written to its stdin run at
/// once, without a new session (whose set-up, a login shell's start-up files included,
/// can take a tenth of a second per call), so faults reach every host within
/// milliseconds of each other.
#[derive(Debug)]
struct Shell {
    child: Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
    calls: u64,
}

impl Shell {
    /// Takes over a running `sh` (stdin and stdout piped) and checks that it answers.
    fn start(mut child: Child) -> std::io::Result<Self> {
        let missing = || std::io::Error::other("the shell's pipes are not there");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let out = std::io::BufReader::new(child.stdout.take().ok_or_else(missing)?);
        let mut sh = Self {
            child,
            stdin,
            out,
            calls: 0,
        };
        // Its private file for each command's stderr, removed when the shell ends.
        sh.stdin
            .write_all(b"RLERR=$(mktemp) && trap 'rm -f \"$RLERR\"' EXIT\n")?;
        let o = sh.run("echo ok", "")?;
        if o.status.success() && o.stdout == b"ok\n" {
            Ok(sh)
        } else {
            Err(std::io::Error::other(format!("the shell answered {o:?}")))
        }
    }

    /// Runs `cmd` with `input` on its stdin (a here-document); returns its output.
    fn run(&mut self, cmd: &str, input: &str) -> std::io::Result<Output> {
        use std::io::BufRead as _;
        use std::os::unix::process::ExitStatusExt as _;
        self.calls += 1;
        let tag = format!("rl{}x{}", std::process::id(), self.calls);
        let mut block = format!("( {cmd}\n) 2>\"$RLERR\" <<'{tag}'\n{input}");
        if !input.is_empty() && !input.ends_with('\n') {
            block.push('\n');
        }
        block += &format!(
            "{tag}\nrc=$?; printf '\\n@@{tag} %s\\n' $rc; sed 's/^/@@{tag}e /' \"$RLERR\"; echo @@{tag}end\n"
        );
        self.stdin.write_all(block.as_bytes())?;
        self.stdin.flush()?;
        let (mut stdout, mut stderr, mut rc) = (Vec::new(), Vec::new(), None);
        let (rc_mark, err_mark, end) = (
            format!("@@{tag} "),
            format!("@@{tag}e "),
            format!("@@{tag}end"),
        );
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end_matches('\n');
            if l == end {
                break;
            } else if let Some(v) = l.strip_prefix(&rc_mark) {
                rc = v.trim().parse::<i32>().ok();
            } else if let Some(v) = l.strip_prefix(&err_mark) {
                stderr.extend_from_slice(v.as_bytes());
                stderr.push(b'\n');
            } else if rc.is_none() {
                stdout.extend_from_slice(line.as_bytes());
            }
        }
        // The newline printed before the status line.
        if stdout.last() == Some(&b'\n') {
            stdout.pop();
        }
        Ok(Output {
            status: std::process::ExitStatus::from_raw(rc.unwrap_or(1).clamp(0, 255) << 8),
            stdout,
            stderr,
        })
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"exit\n");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

/// A connection to one host.
#[derive(Debug)]
pub struct Ssh {
    /// The host.
    pub host: Host,
    /// The master's control socket (on the controller).
    control: PathBuf,
    /// Print instead of run.
    dry_run: bool,
    /// Whether a master was started (and must be closed).
    master: bool,
    /// The open shell, once started (none after it failed: calls then take their own
    /// channel).
    shell: std::sync::Mutex<Option<Shell>>,
    /// Whether the shell failed (it is not started again).
    shell_failed: std::sync::atomic::AtomicBool,
}

impl Ssh {
    /// Makes the connection for `host`, its control socket in `control_dir` (private to
    /// the run). With `dry_run` it only prints that it would.
    pub fn connect(host: &Host, control_dir: &Path, dry_run: bool) -> Result<Self> {
        let mut s = Self {
            host: host.clone(),
            control: control_dir.join(format!("{}.ctl", host.name)),
            dry_run,
            master: false,
            shell: std::sync::Mutex::new(None),
            shell_failed: std::sync::atomic::AtomicBool::new(false),
        };
        if dry_run {
            println!("[{}] ssh {} (ControlMaster)", host.name, s.args().join(" "));
            return Ok(s);
        }
        let mut last = String::new();
        for attempt in 0..s.host.attempts {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt));
            }
            let out = s
                .ssh()
                .args(["-M", "-N", "-f", "-o", "ControlPersist=yes"])
                .arg(&s.host.address)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("host {}: running ssh", s.host.name))?;
            if out.status.success() {
                s.master = true;
                return Ok(s);
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        bail!(
            "host {}: no ssh connection to {} after {} attempts: {last}",
            s.host.name,
            s.host.address,
            s.host.attempts
        )
    }

    /// ssh's options for this host (without the destination).
    fn args(&self) -> Vec<String> {
        let h = &self.host;
        let mut a = vec![];
        if let Some(c) = &h.config {
            a.extend(["-F".into(), c.display().to_string()]);
        }
        let mut o = |k: &str, v: String| a.extend(["-o".into(), format!("{k}={v}")]);
        o("BatchMode", "yes".into());
        o("ControlPath", self.control.display().to_string());
        o("ConnectTimeout", h.connect_timeout_s.to_string());
        o("ServerAliveInterval", "5".into());
        o("ServerAliveCountMax", "3".into());
        o("StrictHostKeyChecking", h.strict_host_key_checking.clone());
        if let Some(k) = &h.known_hosts {
            o("UserKnownHostsFile", k.display().to_string());
            o("HostKeyAlias", h.name.clone());
        }
        if let Some(p) = &h.proxy_command {
            o("ProxyCommand", p.clone());
        }
        if let Some(u) = &h.user {
            o("User", u.clone());
        }
        if let Some(p) = h.port {
            o("Port", p.to_string());
        }
        if let Some(i) = &h.identity {
            o("IdentityFile", i.display().to_string());
            o("IdentitiesOnly", "yes".into());
        }
        a
    }

    fn ssh(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.args()).process_group(0);
        c
    }

    /// The command that runs `cmd` on the host over the master.
    fn remote(&self, cmd: &str) -> Command {
        let mut c = self.ssh();
        c.args(["-o", "ControlMaster=no", "-T"])
            .arg(&self.host.address)
            .arg("--")
            .arg(cmd);
        c
    }

    /// Runs `cmd` (a shell command line) on the host, with `input` on its stdin; retried
    /// with back-off while ssh fails; returns its output, failing on a non-zero status.
    pub fn run_with(&self, cmd: &str, input: &[u8]) -> Result<Output> {
        let out = self.try_run(cmd, input)?;
        if !out.status.success() {
            bail!(
                "host {}: `{}` failed ({}): {}",
                self.host.name,
                cmd,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Runs `cmd` on the host; returns its stdout, failing on a non-zero status.
    pub fn run(&self, cmd: &str) -> Result<String> {
        let out = self.run_with(cmd, &[])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `cmd` and returns its output whatever its status (ssh's own failures retried,
    /// then an error).
    pub fn try_run(&self, cmd: &str, input: &[u8]) -> Result<Output> {
        if self.dry_run {
            println!("[{}] {cmd}", self.host.name);
            match std::str::from_utf8(input) {
                _ if input.is_empty() => {}
                Ok(text) if input.len() <= 4096 => {
                    for l in text.lines() {
                        println!("[{}]   < {l}", self.host.name);
                    }
                }
                _ => println!("[{}]   < ({} bytes on stdin)", self.host.name, input.len()),
            }
            use std::os::unix::process::ExitStatusExt as _;
            return Ok(Output {
                status: std::process::ExitStatus::from_raw(0),
                stdout: vec![],
                stderr: vec![],
            });
        }
        if let Some(out) = self.in_shell(cmd, input) {
            return Ok(out);
        }
        let mut last = String::new();
        for attempt in 0..self.host.attempts {
            if attempt > 0 {
                tracing::debug!(host = %self.host.name, cmd, attempt, "retrying a remote call");
                std::thread::sleep(backoff(attempt));
            }
            let mut child = self
                .remote(cmd)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("host {}: running ssh", self.host.name))?;
            let mut stdin = child.stdin.take().expect("piped");
            // A writer thread, so a command that answers before reading its input whole
            // cannot deadlock against us.
            let out = std::thread::scope(|s| {
                s.spawn(move || {
                    let _ = stdin.write_all(input);
                });
                child.wait_with_output()
            })
            .with_context(|| format!("host {}: waiting for ssh", self.host.name))?;
            if out.status.code() != Some(SSH_FAILED) {
                return Ok(out);
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        bail!(
            "host {}: `{cmd}`: ssh failed {} times: {last}",
            self.host.name,
            self.host.attempts
        )
    }

    /// Runs `cmd` in the open shell (started on first use) when its input is text; `None`
    /// when it cannot (binary input, or the shell failed: then the call takes its own
    /// channel, with retries).
    fn in_shell(&self, cmd: &str, input: &[u8]) -> Option<Output> {
        use std::sync::atomic::Ordering;
        let text = std::str::from_utf8(input).ok()?;
        if input.len() > 1 << 20 || self.shell_failed.load(Ordering::Relaxed) {
            return None;
        }
        let mut guard = self.shell.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let child = self
                .remote("exec /bin/sh")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            match Shell::start(child) {
                Ok(sh) => *guard = Some(sh),
                Err(e) => {
                    tracing::warn!(host = %self.host.name, error = %e, "no open shell; every call takes its own channel");
                    self.shell_failed.store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
        match guard.as_mut()?.run(cmd, text) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::warn!(host = %self.host.name, error = %e, "the open shell failed; calls take their own channels from now on");
                *guard = None;
                self.shell_failed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes `bytes` to `path` on the host (mode `mode`), whole or not at all.
    pub fn upload(&self, bytes: &[u8], path: &str, mode: u32) -> Result<()> {
        let q = quote(path);
        let tmp = quote(&format!("{path}.part"));
        self.run_with(
            &format!("umask 077 && cat > {tmp} && chmod {mode:o} {tmp} && mv -f {tmp} {q}"),
            bytes,
        )
        .map(|_| ())
    }

    /// Reads `path` on the host (empty when it does not exist).
    pub fn download(&self, path: &str) -> Result<Vec<u8>> {
        let q = quote(path);
        let out = self.run_with(&format!("if [ -e {q} ]; then cat {q}; fi"), &[])?;
        Ok(out.stdout)
    }

    /// Starts `cmd` on the host as a long-lived channel with piped stdin and stdout.
    pub fn channel(&self, cmd: &str) -> Result<Child> {
        self.remote(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("host {}: running ssh {cmd}", self.host.name))
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        *self.shell.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.master {
            let _ = self
                .ssh()
                .args(["-O", "exit"])
                .arg(&self.host.address)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The wait before attempt `n` (from 1): 100 ms doubling, at most 3.2 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(100 << (n - 1).min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        for s in [
            "plain",
            "with space",
            "it's",
            "a'b'c",
            "",
            "$HOME",
            "x;rm -rf /",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn the_open_shell_keeps_output_errors_status_and_input_apart() {
        let child = Command::new("/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut sh = Shell::start(child).unwrap();
        let o = sh.run("echo out; echo err >&2; exit 3", "").unwrap();
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        assert_eq!(o.status.code(), Some(3));
        // Input as a here-document, with lines that look like the end markers' prefix.
        let o = sh.run("cat", "line one\n@@rl not a marker\nlast").unwrap();
        assert_eq!(o.stdout, b"line one\n@@rl not a marker\nlast\n");
        assert!(o.status.success());
        // No trailing newline is kept as it is; state does not leak between commands.
        let o = sh.run("x=1; printf abc", "").unwrap();
        assert_eq!(o.stdout, b"abc");
        let o = sh.run("echo \"[$x]\"", "").unwrap();
        assert_eq!(o.stdout, b"[]\n");
    }

    #[test]
    fn a_host_that_does_not_answer_fails_after_its_attempts_naming_itself() {
        // Port 1 on loopback: nothing listens, ssh fails at once (status 255) each time.
        let host = Host {
            name: "nowhere".into(),
            address: "127.0.0.1".into(),
            user: Some("nobody".into()),
            port: Some(1),
            identity: None,
            config: Some("/dev/null".into()),
            known_hosts: Some("/dev/null".into()),
            strict_host_key_checking: "yes".into(),
            connect_timeout_s: 2,
            attempts: 2,
            sudo: false,
            dir: "/tmp".into(),
            proxy_command: None,
            iface: "lo".into(),
            ring_addr: "127.0.0.1".parse().unwrap(),
            nodes: vec![1],
        };
        let dir = std::env::temp_dir().join(format!("ringlab-ssh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = format!("{:#}", Ssh::connect(&host, &dir, false).unwrap_err());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            e.contains("host nowhere") && e.contains("after 2 attempts"),
            "{e}"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(9), Duration::from_millis(3200));
    }
}

//! The node's executor of its services' [`Action`]s: a resource's start or stop, run for
//! real, as the simulator completes them after a drawn delay (`sim/src/sim.rs`).
//!
//! - An action with a `command` runs it as `sh -c COMMAND` in a process group of its own
//!   (its PID is the group's id), stdin from /dev/null, stdout and stderr inherited (the
//!   node's own log), with `RINGLAB_GROUP`, `RINGLAB_RESOURCE`, `RINGLAB_ACTION` (`start` or
//!   `stop`), `RINGLAB_NODE` and `RINGLAB_STATE_DIR` in its environment. The loop never
//!   waits on a child: [`Executor::poll`] reaps with `try_wait` on every turn, and the node
//!   caps its poll timeout at [`CHILD_POLL`] while one runs. Exit 0 is
//!   [`ActionResult::Ok`]; another status, a signal, a spawn error, or the timeout (then the
//!   whole process group is SIGKILLed and the child reaped) is `Failed`.
//! - An action without one (the default) is a file: a start creates
//!   `STATE_DIR/resources/RESOURCE` (the node id and the group in it), a stop removes it (a
//!   missing file is a success: a stop is idempotent, as an OCF agent's is). Synchronous: the
//!   result is ready at once.
//! - At most [`MAX_CHILDREN`] commands run at once; the rest wait in order.
//! - [`Executor::kill_all`] (every exit of the node, and `Drop`) SIGKILLs the process group of
//!   every command still running and reaps it: nothing the node started outlives it.
//!
//! Only the node's own children are signalled, by their process group id, which is their
//! own PID.

use crate::control::ActionStats;
use ringlab_ring::NodeId;
use ringlab_sync::service::{Action, ActionResult, Verb};
use ringlab_sync::ServiceId;
use rustix::process::{kill_process_group, Pid, Signal};
use std::collections::VecDeque;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Commands run at once at most; more wait their turn.
pub const MAX_CHILDREN: usize = 64;

/// The longest the node's poll sleeps while a command runs (how late an exit is seen).
pub const CHILD_POLL: Duration = Duration::from_millis(2);

/// Completed actions handed back per call of [`Executor::take_done`] at most (the rest wait
/// for the next turn).
const DONE_BATCH: usize = 256;

/// One command running.
struct Running {
    service: ServiceId,
    action: Action,
    child: Child,
    /// Monotonic ns after which it is killed.
    deadline: u64,
}

/// The node's executor of actions (see the module docs).
pub(super) struct Executor {
    node: NodeId,
    state_dir: PathBuf,
    running: Vec<Running>,
    waiting: VecDeque<(ServiceId, Action)>,
    done: VecDeque<(ServiceId, u64, ActionResult)>,
    stats: ActionStats,
}

impl Executor {
    /// Creates the executor of node `node`, whose state directory is `state_dir`.
    pub(super) fn new(node: NodeId, state_dir: &Path) -> Self {
        Self {
            node,
            state_dir: state_dir.to_path_buf(),
            running: Vec::new(),
            waiting: VecDeque::new(),
            done: VecDeque::new(),
            stats: ActionStats::default(),
        }
    }

    /// Takes an action of `service` at `now` (monotonic ns): runs its file operation at
    /// once, spawns its command, or queues it when [`MAX_CHILDREN`] run.
    pub(super) fn submit(&mut self, now: u64, service: ServiceId, action: Action) {
        if action.command.is_none() {
            self.stats.run += 1;
            let result = self.file_action(&action);
            self.finish(service, action.id, result);
        } else if self.running.len() < MAX_CHILDREN {
            self.spawn(now, service, action);
        } else {
            self.waiting.push_back((service, action));
        }
    }

    /// Reaps the commands that ended, kills those past their timeout, and starts waiting
    /// ones in the slots freed; never blocks.
    pub(super) fn poll(&mut self, now: u64) {
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let ended = match r.child.try_wait() {
                Ok(Some(status)) => Some(if status.success() {
                    ActionResult::Ok
                } else if let Some(code) = status.code() {
                    ActionResult::Failed {
                        exit: Some(code),
                        error: format!("exit status {code}"),
                    }
                } else {
                    ActionResult::Failed {
                        exit: None,
                        error: format!(
                            "killed by signal {}",
                            status.signal().map_or("?".into(), |s| s.to_string())
                        ),
                    }
                }),
                Ok(None) if now >= r.deadline => {
                    kill_group(&mut r.child);
                    self.stats.timed_out += 1;
                    Some(ActionResult::Failed {
                        exit: None,
                        error: format!("timed out after {} ms", r.action.timeout_ms),
                    })
                }
                Ok(None) => None,
                Err(e) => {
                    // Cannot tell whether it runs: kill it rather than leave it unwatched.
                    kill_group(&mut r.child);
                    Some(ActionResult::Failed {
                        exit: None,
                        error: format!("waiting for the command: {e}"),
                    })
                }
            };
            match ended {
                Some(result) => {
                    let r = self.running.swap_remove(i);
                    tracing::debug!(
                        group = %r.action.group,
                        resource = %r.action.resource,
                        verb = r.action.verb.as_str(),
                        ?result,
                        "action ended"
                    );
                    self.finish(r.service, r.action.id, result);
                }
                None => i += 1,
            }
        }
        while self.running.len() < MAX_CHILDREN {
            let Some((service, action)) = self.waiting.pop_front() else {
                break;
            };
            self.spawn(now, service, action);
        }
    }

    /// Returns up to a batch of ended actions: (service, action id, result).
    pub(super) fn take_done(&mut self) -> Vec<(ServiceId, u64, ActionResult)> {
        let n = self.done.len().min(DONE_BATCH);
        self.done.drain(..n).collect()
    }

    /// Returns whether ended actions wait to be handed back.
    pub(super) fn has_done(&self) -> bool {
        !self.done.is_empty()
    }

    /// Returns whether a command runs or waits (the loop then polls at least every
    /// [`CHILD_POLL`]).
    pub(super) fn is_busy(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Returns whether nothing runs, waits or waits to be handed back.
    pub(super) fn is_idle(&self) -> bool {
        !self.is_busy() && self.done.is_empty()
    }

    /// Returns the counters, with the running and waiting commands now.
    pub(super) fn stats(&self) -> ActionStats {
        ActionStats {
            running: self.running.len() as u64,
            queued: self.waiting.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Describes what runs or waits, for a log line.
    pub(super) fn describe(&self) -> Vec<String> {
        self.running
            .iter()
            .map(|r| &r.action)
            .chain(self.waiting.iter().map(|(_, a)| a))
            .map(|a| format!("{} {}/{}", a.verb.as_str(), a.group, a.resource))
            .collect()
    }

    /// SIGKILLs the process group of every command still running and reaps it; drops the
    /// waiting ones. Returns how many were killed.
    pub(super) fn kill_all(&mut self) -> usize {
        let n = self.running.len();
        for mut r in self.running.drain(..) {
            tracing::warn!(
                group = %r.action.group,
                resource = %r.action.resource,
                verb = r.action.verb.as_str(),
                pid = r.child.id(),
                "killing a command still running as the node exits"
            );
            kill_group(&mut r.child);
            // SIGKILL cannot be caught: this returns at once.
            let _ = r.child.wait();
        }
        self.waiting.clear();
        n
    }

    fn finish(&mut self, service: ServiceId, id: u64, result: ActionResult) {
        match &result {
            ActionResult::Ok => self.stats.ok += 1,
            ActionResult::Failed { .. } => self.stats.failed += 1,
        }
        self.done.push_back((service, id, result));
    }

    fn spawn(&mut self, now: u64, service: ServiceId, action: Action) {
        self.stats.run += 1;
        let cmd = action.command.as_deref().unwrap_or_default();
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("RINGLAB_GROUP", &action.group)
            .env("RINGLAB_RESOURCE", &action.resource)
            .env("RINGLAB_ACTION", action.verb.as_str())
            .env("RINGLAB_NODE", self.node.to_string())
            .env("RINGLAB_STATE_DIR", &self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::debug!(
                    group = %action.group,
                    resource = %action.resource,
                    verb = action.verb.as_str(),
                    pid = child.id(),
                    "action started"
                );
                let deadline = now.saturating_add(action.timeout_ms.saturating_mul(1_000_000));
                self.running.push(Running {
                    service,
                    action,
                    child,
                    deadline,
                });
            }
            Err(e) => {
                tracing::warn!(group = %action.group, error = %e, "could not run a command");
                let id = action.id;
                self.finish(
                    service,
                    id,
                    ActionResult::Failed {
                        exit: None,
                        error: format!("spawning sh: {e}"),
                    },
                );
            }
        }
    }

    /// The default action: the file `STATE_DIR/resources/RESOURCE`.
    fn file_action(&self, a: &Action) -> ActionResult {
        let failed = |error: String| ActionResult::Failed { exit: None, error };
        let name = Path::new(&a.resource);
        let plain = name.components().count() == 1
            && matches!(
                name.components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain {
            return failed(format!(
                "resource {:?} is not a plain file name",
                a.resource
            ));
        }
        let dir = self.state_dir.join("resources");
        let path = dir.join(name);
        match a.verb {
            Verb::Start => {
                let body = format!("node {} group {}\n", self.node, a.group);
                match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, body)) {
                    Ok(()) => ActionResult::Ok,
                    Err(e) => failed(format!("creating {}: {e}", path.display())),
                }
            }
            Verb::Stop => match std::fs::remove_file(&path) {
                Ok(()) => ActionResult::Ok,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ActionResult::Ok,
                Err(e) => failed(format!("removing {}: {e}", path.display())),
            },
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// SIGKILLs the process group of `child` (its own PID: it was spawned with
/// `process_group(0)`); falls back to the child alone if the group is gone.
fn kill_group(child: &mut Child) {
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return;
    };
    if kill_process_group(pid, Signal::KILL).is_err() {
        let _ = child.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: u64, verb: Verb, command: Option<&str>, timeout_ms: u64) -> Action {
        Action {
            id,
            verb,
            group: "web".into(),
            resource: "ip".into(),
            command: command.map(String::from),
            timeout_ms,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringlab-actions-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Polls until `n` actions ended (bounded: 20 s).
    fn wait_done(x: &mut Executor, n: usize) -> Vec<(ServiceId, u64, ActionResult)> {
        let mut out = Vec::new();
        for _ in 0..4000 {
            x.poll(crate::clock::monotonic_ns());
            out.extend(x.take_done());
            if out.len() >= n {
                return out;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("only {} of {n} actions ended: {out:?}", out.len());
    }

    #[test]
    fn the_default_action_is_a_file_and_a_stop_is_idempotent() {
        let d = temp("file");
        let mut x = Executor::new(4, &d);
        let now = crate::clock::monotonic_ns();
        x.submit(now, 3, action(1, Verb::Start, None, 100));
        assert!(x.has_done() && !x.is_busy());
        assert_eq!(x.take_done(), vec![(3, 1, ActionResult::Ok)]);
        let f = d.join("resources/ip");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "node 4 group web\n");
        x.submit(now, 3, action(2, Verb::Stop, None, 100));
        x.submit(now, 3, action(3, Verb::Stop, None, 100));
        assert_eq!(
            x.take_done(),
            vec![(3, 2, ActionResult::Ok), (3, 3, ActionResult::Ok)]
        );
        assert!(!f.exists());
        let mut bad = action(4, Verb::Start, None, 100);
        bad.resource = "../x".into();
        x.submit(now, 3, bad);
        assert!(matches!(
            x.take_done()[0].2,
            ActionResult::Failed { exit: None, .. }
        ));
        assert_eq!((x.stats().run, x.stats().ok, x.stats().failed), (4, 3, 1));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn commands_report_their_exit_and_see_their_environment() {
        let d = temp("cmd");
        let mut x = Executor::new(2, &d);
        let now = crate::clock::monotonic_ns();
        let env = "test \"$RINGLAB_GROUP/$RINGLAB_RESOURCE/$RINGLAB_ACTION/$RINGLAB_NODE\" = web/ip/stop/2 \
                   && test -d \"$RINGLAB_STATE_DIR\"";
        x.submit(now, 3, action(1, Verb::Stop, Some(env), 10_000));
        x.submit(now, 3, action(2, Verb::Start, Some("exit 7"), 10_000));
        x.submit(
            now,
            3,
            action(3, Verb::Start, Some("kill -TERM $$"), 10_000),
        );
        let mut done = wait_done(&mut x, 3);
        done.sort_by_key(|d| d.1);
        assert_eq!(done[0], (3, 1, ActionResult::Ok));
        assert_eq!(
            done[1].2,
            ActionResult::Failed {
                exit: Some(7),
                error: "exit status 7".into()
            }
        );
        assert!(
            matches!(&done[2].2, ActionResult::Failed { exit: None, error } if error.contains("signal 15"))
        );
        assert!(x.is_idle());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_process_group() {
        let d = temp("timeout");
        let mut x = Executor::new(1, &d);
        let pidfile = d.join("pid");
        let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        x.submit(
            crate::clock::monotonic_ns(),
            3,
            action(1, Verb::Start, Some(&cmd), 300),
        );
        let done = wait_done(&mut x, 1);
        assert_eq!(
            done[0].2,
            ActionResult::Failed {
                exit: None,
                error: "timed out after 300 ms".into()
            }
        );
        assert_eq!(x.stats().timed_out, 1);
        // The grandchild (`sleep`) went with the group.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(crate::harness::process_gone(pid), "sleep {pid} still runs");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn kill_all_leaves_nothing_behind_and_waiting_commands_queue() {
        let d = temp("killall");
        let mut x = Executor::new(1, &d);
        let now = crate::clock::monotonic_ns();
        for i in 0..(MAX_CHILDREN as u64 + 3) {
            x.submit(now, 3, action(i, Verb::Start, Some("sleep 30"), 60_000));
        }
        assert_eq!(x.stats().running, MAX_CHILDREN as u64);
        assert_eq!(x.stats().queued, 3);
        let pids: Vec<i32> = x.running.iter().map(|r| r.child.id() as i32).collect();
        assert_eq!(x.kill_all(), MAX_CHILDREN);
        assert!(x.is_idle());
        for p in pids {
            assert!(crate::harness::process_gone(p), "{p} still runs");
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}

//! Service-desk tickets: kinds, priorities, the state machine, and the SLA clocks.
//!
//! A ticket has two clocks, first response and resolution, counting business time only (see
//! [`BusinessHours`]). Both run together from creation, pause while the ticket waits on the
//! customer, and stop at the first public agent reply and at resolution respectively. While a
//! clock runs, the wall-clock instants at which it becomes at risk and breached are known; the
//! earliest of those not yet reported is `next_check`, which the SLA watcher scans for.

use crate::business_hours::BusinessHours;
use crate::time::Micros;

pub const KINDS: [&str; 4] = ["COMPLAINT", "REQUEST", "QUESTION", "FEEDBACK"];
pub const PRIORITIES: [&str; 4] = ["LOW", "NORMAL", "HIGH", "URGENT"];
pub const STATES: [&str; 5] = ["NEW", "OPEN", "WAITING_ON_CUSTOMER", "RESOLVED", "CLOSED"];
/// States in which a ticket counts as open (for workload and the overdue list).
pub const OPEN_STATES: [&str; 3] = ["NEW", "OPEN", "WAITING_ON_CUSTOMER"];
pub const SLA_STATUSES: [&str; 4] = ["ON_TRACK", "AT_RISK", "BREACHED", "MET"];

/// Default fraction of a clock after which it is at risk.
pub const DEFAULT_AT_RISK_FRACTION: f64 = 0.8;

/// Reported-event bits in `Sla::flags`.
pub const FR_AT_RISK: i64 = 1;
pub const FR_BREACHED: i64 = 2;
pub const RES_AT_RISK: i64 = 4;
pub const RES_BREACHED: i64 = 8;

pub fn ticket_name(id: i64) -> String {
    format!("tickets/{id}")
}

pub fn comment_name(ticket_id: i64, id: i64) -> String {
    format!("tickets/{ticket_id}/comments/{id}")
}

pub fn agent_name(id: i64) -> String {
    format!("agents/{id}")
}

pub fn team_name(id: i64) -> String {
    format!("teams/{id}")
}

pub fn sla_policy_name(id: i64) -> String {
    format!("slaPolicies/{id}")
}

pub fn is_open(state: &str) -> bool {
    OPEN_STATES.contains(&state)
}

/// May a ticket go from `from` to `to`? RESOLVED → OPEN is a reopen; CLOSED is final.
pub fn legal_transition(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("NEW", "OPEN")
            | ("NEW", "WAITING_ON_CUSTOMER")
            | ("NEW", "RESOLVED")
            | ("NEW", "CLOSED")
            | ("OPEN", "WAITING_ON_CUSTOMER")
            | ("OPEN", "RESOLVED")
            | ("OPEN", "CLOSED")
            | ("WAITING_ON_CUSTOMER", "OPEN")
            | ("WAITING_ON_CUSTOMER", "RESOLVED")
            | ("WAITING_ON_CUSTOMER", "CLOSED")
            | ("RESOLVED", "OPEN")
            | ("RESOLVED", "CLOSED")
    )
}

/// The states `from` may move to, for error messages.
pub fn next_states(from: &str) -> Vec<&'static str> {
    STATES
        .iter()
        .copied()
        .filter(|to| legal_transition(from, to))
        .collect()
}

/// Rank of a priority, higher is more urgent.
pub fn priority_rank(p: &str) -> i64 {
    PRIORITIES
        .iter()
        .position(|x| *x == p)
        .map(|i| i as i64)
        .unwrap_or(1)
}

/// An SLA event the watcher reports once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaEvent {
    /// `sla_at_risk` or `sla_breached`.
    pub kind: &'static str,
    /// `first_response` or `resolution`.
    pub clock: &'static str,
}

/// A ticket's SLA clocks as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sla {
    /// Business time allowed; `None`: no policy covers the ticket.
    pub first_response_target: Option<Micros>,
    pub resolution_target: Option<Micros>,
    pub at_risk_fraction: f64,
    /// Business time used before the current running stretch.
    pub first_response_used: Micros,
    pub resolution_used: Micros,
    /// Start of the current running stretch; `None` while paused or stopped.
    pub clock_start: Option<Micros>,
    pub first_response_due: Option<Micros>,
    pub resolution_due: Option<Micros>,
    pub first_response_time: Option<Micros>,
    pub resolved_time: Option<Micros>,
    /// Business time taken, once the clock stopped.
    pub first_response_business: Option<Micros>,
    pub resolution_business: Option<Micros>,
    pub status: String,
    pub flags: i64,
    pub next_check: Option<Micros>,
    pub overdue_key: Option<i64>,
}

impl Sla {
    /// Clocks for a ticket opened at `now`.
    pub fn start(
        first_response: Option<Micros>,
        resolution: Option<Micros>,
        at_risk_fraction: f64,
        now: Micros,
    ) -> Sla {
        Sla {
            first_response_target: first_response,
            resolution_target: resolution,
            at_risk_fraction,
            clock_start: Some(now),
            status: "ON_TRACK".into(),
            ..Default::default()
        }
    }

    pub fn first_response_running(&self) -> bool {
        self.first_response_target.is_some()
            && self.first_response_time.is_none()
            && self.resolved_time.is_none()
    }

    pub fn resolution_running(&self) -> bool {
        self.resolution_target.is_some() && self.resolved_time.is_none()
    }

    fn at_risk_amount(&self, target: Micros) -> Micros {
        let f = if self.at_risk_fraction > 0.0 && self.at_risk_fraction <= 1.0 {
            self.at_risk_fraction
        } else {
            DEFAULT_AT_RISK_FRACTION
        };
        ((target as f64) * f).ceil() as Micros
    }

    /// The instants the running clocks become at risk and breached: `(fr_risk, fr_due,
    /// res_risk, res_due)`, `None` for a clock that is not running.
    fn marks(&self, hours: &BusinessHours) -> [Option<Micros>; 4] {
        let Some(start) = self.clock_start else {
            return [None; 4];
        };
        let mut out = [None; 4];
        if let (true, Some(t)) = (self.first_response_running(), self.first_response_target) {
            out[0] = Some(hours.add(start, self.at_risk_amount(t) - self.first_response_used));
            out[1] = Some(hours.add(start, t - self.first_response_used));
        }
        if let (true, Some(t)) = (self.resolution_running(), self.resolution_target) {
            out[2] = Some(hours.add(start, self.at_risk_amount(t) - self.resolution_used));
            out[3] = Some(hours.add(start, t - self.resolution_used));
        }
        out
    }

    /// Recompute due times, status, the next check and the overdue key after any change.
    pub fn refresh(&mut self, hours: &BusinessHours, kind: &str, state: &str) {
        let marks = self.marks(hours);
        if self.first_response_running() {
            self.first_response_due = marks[1];
        }
        if self.resolution_running() {
            self.resolution_due = marks[3];
        }
        let pending = [
            (marks[0], FR_AT_RISK),
            (marks[1], FR_BREACHED),
            (marks[2], RES_AT_RISK),
            (marks[3], RES_BREACHED),
        ];
        self.next_check = pending
            .iter()
            .filter(|(_, bit)| self.flags & bit == 0)
            .filter_map(|(t, bit)| t.map(|t| fires_at(t, *bit)))
            .min();
        let breached = self.flags & (FR_BREACHED | RES_BREACHED) != 0;
        let at_risk = (self.flags & FR_AT_RISK != 0 && self.first_response_running())
            || (self.flags & RES_AT_RISK != 0 && self.resolution_running());
        self.status = if breached {
            "BREACHED"
        } else if self.resolved_time.is_some() {
            "MET"
        } else if at_risk {
            "AT_RISK"
        } else {
            "ON_TRACK"
        }
        .to_string();
        // An unanswered complaint stays listed even when resolved, until answered or closed.
        let unanswered_complaint =
            kind == "COMPLAINT" && self.first_response_time.is_none() && state != "CLOSED";
        let listed = matches!(self.status.as_str(), "BREACHED" | "AT_RISK")
            && (is_open(state) || unanswered_complaint);
        self.overdue_key = listed.then(|| {
            let due = if self.first_response_time.is_none() {
                self.first_response_due.or(self.resolution_due)
            } else {
                self.resolution_due
            };
            overdue_key(self.status == "BREACHED", due.unwrap_or(0))
        });
    }

    fn bank(&mut self, hours: &BusinessHours, now: Micros) {
        if let Some(start) = self.clock_start {
            let spent = hours.between(start, now);
            if self.first_response_running() {
                self.first_response_used += spent;
            }
            if self.resolution_running() {
                self.resolution_used += spent;
            }
            self.clock_start = Some(now);
        }
    }

    /// Waiting on the customer: bank the time used and stop counting.
    pub fn pause(&mut self, hours: &BusinessHours, now: Micros) {
        self.bank(hours, now);
        self.clock_start = None;
        if self.first_response_running() {
            self.first_response_due = None;
        }
        if self.resolution_running() {
            self.resolution_due = None;
        }
    }

    /// Counting again (the customer answered, or an agent reopened the ticket).
    pub fn resume(&mut self, now: Micros) {
        if self.clock_start.is_none() {
            self.clock_start = Some(now);
        }
    }

    /// The first public reply by an agent.
    pub fn first_response(&mut self, hours: &BusinessHours, now: Micros) {
        if self.first_response_time.is_some() || self.resolved_time.is_some() {
            return;
        }
        self.bank(hours, now);
        self.first_response_time = Some(now);
        if self.first_response_target.is_some() {
            self.first_response_business = Some(self.first_response_used);
        }
    }

    pub fn resolve(&mut self, hours: &BusinessHours, now: Micros) {
        if self.resolved_time.is_some() {
            return;
        }
        self.bank(hours, now);
        self.resolved_time = Some(now);
        if self.resolution_target.is_some() {
            self.resolution_business = Some(self.resolution_used);
        }
        self.clock_start = None;
    }

    /// Resolution undone: the resolution clock runs again from what it had used.
    pub fn reopen(&mut self, now: Micros) {
        self.resolved_time = None;
        self.resolution_business = None;
        self.clock_start = Some(now);
    }

    /// The events due at `now` and not yet reported; marks them reported.
    pub fn due_events(&mut self, hours: &BusinessHours, now: Micros) -> Vec<SlaEvent> {
        let marks = self.marks(hours);
        let checks = [
            (marks[0], FR_AT_RISK, "sla_at_risk", "first_response"),
            (marks[1], FR_BREACHED, "sla_breached", "first_response"),
            (marks[2], RES_AT_RISK, "sla_at_risk", "resolution"),
            (marks[3], RES_BREACHED, "sla_breached", "resolution"),
        ];
        let mut out = Vec::new();
        for (t, bit, kind, clock) in checks {
            if let Some(t) = t.map(|t| fires_at(t, bit)) {
                if t <= now && self.flags & bit == 0 {
                    self.flags |= bit;
                    out.push(SlaEvent { kind, clock });
                }
            }
        }
        out
    }
}

/// When the event of a mark fires: at-risk at the mark; breached just after the due instant,
/// since an answer at exactly the due time is on time (so a watcher that looks at that very
/// instant cannot race the answer).
fn fires_at(mark: Micros, bit: i64) -> Micros {
    if bit & (FR_BREACHED | RES_BREACHED) != 0 {
        mark.saturating_add(1)
    } else {
        mark
    }
}

/// Sort key of the overdue list: breached before at risk, then the earliest due time.
pub fn overdue_key(breached: bool, due: Micros) -> i64 {
    let rank: i64 = if breached { 0 } else { 1 };
    (rank << 52) | due.clamp(0, (1 << 52) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Micros = 3_600_000_000;

    #[test]
    fn clocks_pause_and_stop() {
        let hours = BusinessHours::always();
        let mut s = Sla::start(Some(4 * H), Some(10 * H), 0.5, 0);
        s.refresh(&hours, "COMPLAINT", "NEW");
        assert_eq!(s.first_response_due, Some(4 * H));
        assert_eq!(s.next_check, Some(2 * H));
        s.pause(&hours, H);
        s.refresh(&hours, "COMPLAINT", "WAITING_ON_CUSTOMER");
        assert_eq!(s.next_check, None);
        s.resume(5 * H);
        s.refresh(&hours, "COMPLAINT", "OPEN");
        assert_eq!(s.first_response_due, Some(8 * H));
        assert!(s.due_events(&hours, 6 * H).len() == 1);
        s.refresh(&hours, "COMPLAINT", "OPEN");
        assert_eq!(s.status, "AT_RISK");
        assert!(s.overdue_key.is_some());
        s.first_response(&hours, 7 * H);
        assert_eq!(s.first_response_business, Some(3 * H));
        s.refresh(&hours, "COMPLAINT", "OPEN");
        assert_eq!(s.status, "ON_TRACK");
        let ev = s.due_events(&hours, 20 * H);
        assert_eq!(ev.len(), 2);
        assert!(s.due_events(&hours, 21 * H).is_empty());
    }

    #[test]
    fn an_answer_at_the_due_instant_is_on_time() {
        let hours = BusinessHours::always();
        let mut s = Sla::start(Some(H), None, 0.5, 0);
        s.refresh(&hours, "QUESTION", "NEW");
        assert_eq!(s.first_response_due, Some(H));
        let at_risk = s.due_events(&hours, H);
        assert_eq!(
            at_risk.len(),
            1,
            "at risk by the due instant, not yet breached"
        );
        s.refresh(&hours, "QUESTION", "NEW");
        assert_eq!(s.next_check, Some(H + 1));
        assert!(s.due_events(&hours, H).is_empty());
        let breached = s.due_events(&hours, H + 1);
        assert_eq!(breached.len(), 1);
        assert_eq!(breached[0].kind, "sla_breached");
    }

    #[test]
    fn transitions() {
        assert!(legal_transition("NEW", "OPEN"));
        assert!(!legal_transition("CLOSED", "OPEN"));
        assert!(!legal_transition("RESOLVED", "WAITING_ON_CUSTOMER"));
        assert_eq!(next_states("CLOSED"), Vec::<&str>::new());
    }
}

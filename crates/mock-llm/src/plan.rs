//! How much of a reply goes out, and how it ends: the request's `max_tokens`
//! (a delta is the mock's token) and the failure markers decide it, the same way
//! for streamed and whole replies.

use crate::fault::InjectedFault;
use crate::reply::{Reply, ReplyBody};

/// The `finish_reason` of a reply cut at `max_tokens`.
pub(crate) const LENGTH: &str = "length";

/// What is sent of a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// How many of the reply's deltas are sent.
    pub(crate) deltas: usize,
    pub(crate) end: End,
}

/// What follows the deltas that are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The final event with this `finish_reason`, then `[DONE]`.
    Finish(&'static str),
    /// Nothing, ever (hang, stall): the client gives up.
    Silence,
    /// `[mock:endless]`: this many more words `more ` (none: without end), then
    /// `finish_reason` `length`.
    MoreWords(Option<usize>),
}

impl Plan {
    /// The plan for `reply` of `total` deltas, with the failure `fault` and the
    /// request's `max_tokens`. A limit reached before a stall ends the reply with
    /// `length`, as a real model would; an endless answer stops at the limit.
    pub(crate) fn new(
        reply: &Reply,
        total: usize,
        fault: Option<InjectedFault>,
        max_tokens: Option<usize>,
    ) -> Plan {
        let stall = match fault {
            Some(InjectedFault::Hang) => Some(0),
            Some(InjectedFault::StallAfter(count)) => Some(count),
            _ => None,
        };
        // Only an answer goes on without end: tool calls must reach their results.
        let endless =
            fault == Some(InjectedFault::Endless) && matches!(reply.body, ReplyBody::Text(_));
        match (max_tokens, stall) {
            (Some(limit), _) if limit < total && stall.is_none_or(|count| limit <= count) => Plan {
                deltas: limit,
                end: End::Finish(LENGTH),
            },
            (_, Some(count)) => Plan {
                deltas: count.min(total),
                end: End::Silence,
            },
            _ if endless => Plan {
                deltas: total,
                end: End::MoreWords(max_tokens.map(|limit| limit - total)),
            },
            _ => Plan {
                deltas: total,
                end: End::Finish(reply.finish_reason()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::mock_tool_call;

    fn text() -> Reply {
        Reply {
            reasoning: None,
            body: ReplyBody::Text("a b c".into()),
        }
    }

    fn plan(fault: Option<InjectedFault>, max_tokens: Option<usize>) -> (usize, End) {
        let plan = Plan::new(&text(), 3, fault, max_tokens);
        (plan.deltas, plan.end)
    }

    #[test]
    fn max_tokens_cuts_a_longer_reply_with_length() {
        assert_eq!(plan(None, None), (3, End::Finish("stop")));
        assert_eq!(plan(None, Some(3)), (3, End::Finish("stop")));
        assert_eq!(plan(None, Some(2)), (2, End::Finish(LENGTH)));
        assert_eq!(plan(None, Some(0)), (0, End::Finish(LENGTH)));
    }

    #[test]
    fn a_stall_before_the_limit_stays_silent() {
        let stall = Some(InjectedFault::StallAfter(1));
        assert_eq!(plan(stall, None), (1, End::Silence));
        assert_eq!(plan(stall, Some(2)), (1, End::Silence));
        assert_eq!(plan(stall, Some(1)), (1, End::Finish(LENGTH)));
        assert_eq!(
            plan(Some(InjectedFault::StallAfter(9)), None),
            (3, End::Silence)
        );
        assert_eq!(plan(Some(InjectedFault::Hang), Some(2)), (0, End::Silence));
    }

    #[test]
    fn an_endless_answer_goes_on_up_to_the_limit() {
        let endless = Some(InjectedFault::Endless);
        assert_eq!(plan(endless, None), (3, End::MoreWords(None)));
        assert_eq!(plan(endless, Some(5)), (3, End::MoreWords(Some(2))));
        assert_eq!(plan(endless, Some(3)), (3, End::MoreWords(Some(0))));
        assert_eq!(plan(endless, Some(1)), (1, End::Finish(LENGTH)));
        let calls = Reply {
            reasoning: None,
            body: ReplyBody::ToolCalls(vec![mock_tool_call(0, "docs", "q", 1)]),
        };
        let plan = Plan::new(&calls, 4, endless, None);
        assert_eq!(plan.end, End::Finish("tool_calls"));
    }
}

use super::*;
use crate::actors::testing::{RecordingBroker, ScriptedAgent, Settled};

#[actix::test]
async fn a_worker_runs_turns_side_by_side_and_reports_its_load() {
    tokio::time::pause();
    let broker = Arc::new(RecordingBroker::new());
    let replies = broker.open_reply_queue().await.unwrap();
    let mut questions = broker.consume_questions().await.unwrap();
    let agent = Arc::new(ScriptedAgent);
    let worker = AgentWorker::new(agent, broker.clone(), Duration::ZERO, 1 << 20).start();
    let mut deliver = async |text: &str| {
        let question = crate::broker::Question {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            reply_to: replies.address.clone(),
            history: vec![],
            text: text.into(),
            tools: None,
        };
        broker.publish_question(question).await.unwrap();
        questions.next().await.unwrap()
    };
    let cancelled = deliver("sleep 60000").await;
    let given_back = deliver("sleep 60000").await;
    let (cancelled_id, given_back_id) = (cancelled.question.turn_id, given_back.question.turn_id);
    let run = |delivery| RunTurn {
        span: turn_span(&delivery),
        delivery,
    };
    let cancelled = worker.send(run(cancelled));
    let given_back = worker.send(run(given_back));
    assert_eq!(worker.send(GetLoad).await.unwrap(), 2);

    worker.do_send(CancelTurn {
        turn_id: cancelled_id,
    });
    assert_eq!(cancelled.await.unwrap(), TurnOutcome::Cancelled);
    assert_eq!(worker.send(GetLoad).await.unwrap(), 1);
    worker.do_send(GiveBackAll);
    assert_eq!(given_back.await.unwrap(), TurnOutcome::GivenBack);
    assert_eq!(worker.send(GetLoad).await.unwrap(), 0);
    assert_eq!(
        broker.settled(),
        vec![
            (cancelled_id, Settled::Acked),
            (given_back_id, Settled::Requeued)
        ]
    );
}

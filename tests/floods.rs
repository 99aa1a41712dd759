//! Clients that try to make the gateway hold more than it should: memory stays
//! bounded (resident memory read from /proc), the offenders are closed or refused,
//! and everybody else keeps being served (docs/security.md).

mod common;

use std::time::Duration;

use common::raw_ws::{RawSocket, close_code, write_filler};
use common::{Client, expected_answer, mock_llm, serve};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn frames_claiming_512_mib_are_refused_at_their_header() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[]);
    let before = server.rss_bytes();

    let claims = (0..4).map(|_| async {
        let RawSocket {
            mut reader,
            mut writer,
        } = RawSocket::connect(&server.addr).await;
        let header = RawSocket::header(0x1, true, 512 * MIB);
        writer.write_all(&header).await.expect("write the header");
        // Send a good part of what was announced, as long as the gateway reads it.
        let filler = write_filler(&mut writer, 128 << 20, Duration::from_secs(2));
        let ((), code) = tokio::join!(filler, close_code(&mut reader));
        code
    });
    let codes = futures_util::future::join_all(claims).await;

    let grown = server.rss_bytes().saturating_sub(before);
    assert_eq!(codes, vec![Some(1009); 4], "each closed as too big");
    assert!(grown < 32 * MIB, "RSS grew by {} MiB", grown / MIB);

    let mut client = Client::connect(&server).await;
    assert_eq!(
        client.chat("still here").await.answer,
        expected_answer("still here", 1)
    );
}

#[tokio::test]
async fn clients_that_never_read_are_let_go_and_their_frames_freed() {
    let model = mock_llm(0, 0);
    // Questions of 500 KB, answered by as much, 17 turns a session: 8.5 MB of
    // answers per client, more than the kernel's socket buffers (up to 4 MiB here)
    // and the 1 MiB bound together, however fast the machine is.
    let server = serve(
        &model,
        &[
            ("PARLOR_HTTP__MAX_MESSAGE_BYTES", "600000"),
            ("PARLOR_SESSION__MAX_QUEUED_TURNS", "16"),
        ],
    );
    let before = server.rss_bytes();
    let words = format!("{} ", "x".repeat(999)).repeat(500);
    let question = serde_json::json!({ "type": "message", "text": words });
    let frame = RawSocket::text_frame(&question.to_string());

    let addr = &server.addr;
    let flood = |frame: Vec<u8>| async move {
        let mut socket = RawSocket::connect(addr).await;
        // A question every 50 ms for 10 s, reading nothing.
        for _ in 0..200 {
            let write = socket.writer.write_all(&frame);
            if tokio::time::timeout(Duration::from_secs(1), write)
                .await
                .is_err()
            {
                break; // the gateway stopped reading this client
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        socket
    };
    let mut sockets = futures_util::future::join_all((0..4).map(|_| flood(frame.clone()))).await;
    // Still reading nothing: the gateway lets each client go once its turns'
    // answers pile up past the bound (a slow machine takes longer to get there).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while server
        .log()
        .matches("the client does not read; letting it go")
        .count()
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clients that do not read were not let go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = server.rss_bytes().saturating_sub(before);

    for socket in &mut sockets {
        assert_eq!(
            socket.close_code().await,
            Some(1008),
            "let go as not reading"
        );
    }
    // Unbounded, no client is let go (the wait above fails), and on one machine
    // the frames they did not read took 168 MiB. Bounded, what remains is the
    // turns' own work (500 KB questions waiting, answers, histories and their
    // writes to storage): 20 to 60 MiB with 9 turns a session on the machines this
    // ran on.
    assert!(grown < 128 * MIB, "RSS grew by {} MiB", grown / MIB);

    let mut client = Client::connect(&server).await;
    assert_eq!(
        client.chat("still here").await.answer,
        expected_answer("still here", 1)
    );
}

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

//! The ledger's gRPC API, checked the way an auditor's tool would: every proof
//! it serves must verify against the signed checkpoint with the independent
//! verification code in `vigil-ledger`.

use vigil_ledger::{
    leaf_hash, open_note, verify_consistency, verify_inclusion, Checkpoint, Hash, NoteVerifier,
};
use vigil_proto::events::event::Kind;
use vigil_proto::ledger::ledger_client::LedgerClient;
use vigil_proto::ledger::{
    find_entries_request::Filter, get_inclusion_proof_request::Leaf, FindEntriesRequest,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
    TimeRange,
};
use vigil_tests::{show, Gateway, GatewaySpec, AGENT, AGENT_PASSWORD};

fn hashes(proof: &[Vec<u8>]) -> Vec<Hash> {
    proof
        .iter()
        .map(|h| h.as_slice().try_into().expect("32-byte hash"))
        .collect()
}

#[tokio::test]
async fn proofs_from_the_grpc_api_verify_against_the_signed_checkpoint() {
    let gw = Gateway::start(GatewaySpec::new());
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "{}", show(&out));
    let first = gw.wait_for_events(|ev| {
        ev.iter()
            .any(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
    });
    let out = gw.psql(AGENT, AGENT_PASSWORD, &["-c", "SELECT 2"]);
    assert!(out.status.success(), "{}", show(&out));
    let all = gw.wait_for_events(|ev| {
        ev.iter()
            .filter(|e| matches!(e.kind, Some(Kind::SessionClosed(_))))
            .count()
            == 2
    });

    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", gw.spec.grpc_port))
            .unwrap()
            .connect()
            .await
            .expect("connect to the ledger's gRPC API");
    let mut client = LedgerClient::new(channel);
    let cp = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let verifier = NoteVerifier::from_vkey_text(&gw.verifier_key()).unwrap();
    let text = open_note(&cp.signed_note, &verifier).expect("checkpoint signature verifies");
    let checkpoint = Checkpoint::parse(&text).unwrap();
    assert_eq!(checkpoint.size, cp.size);
    assert!(checkpoint.size >= all.len() as u64);

    // Inclusion of the first Request, found by its event id.
    let request = all
        .iter()
        .find(|e| matches!(e.kind, Some(Kind::Request(_))))
        .unwrap();
    let incl = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(Leaf::EventId(request.event_id.clone())),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(incl.tree_size, checkpoint.size);
    verify_inclusion(
        &leaf_hash(&incl.leaf_data),
        incl.index,
        incl.tree_size,
        &hashes(&incl.proof),
        &checkpoint.root,
    )
    .expect("inclusion proof verifies");
    // A proof for another leaf must not pass for this one.
    let mut wrong = incl.leaf_data.clone();
    *wrong.last_mut().unwrap() ^= 1;
    assert!(verify_inclusion(
        &leaf_hash(&wrong),
        incl.index,
        incl.tree_size,
        &hashes(&incl.proof),
        &checkpoint.root
    )
    .is_err());

    // Consistency between the log after the first session and now.
    let size1 = first.len() as u64;
    let entries = client
        .get_entries(GetEntriesRequest {
            start: 0,
            count: size1 as u32,
            include_bodies: false,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len() as u64, size1);
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.leaf_data)).collect();
    let root1 = vigil_ledger::tree::root_from_leaf_hashes(&leaves);
    let cons = client
        .get_consistency_proof(GetConsistencyProofRequest {
            size1,
            size2: checkpoint.size,
        })
        .await
        .unwrap()
        .into_inner();
    verify_consistency(
        size1,
        checkpoint.size,
        &hashes(&cons.proof),
        &root1,
        &checkpoint.root,
    )
    .expect("consistency proof verifies");

    // FindEntries: the first session's events, by session (paged), by
    // subject and by time; bodies for the authorised (loopback) caller.
    let session = first[0].session_id.clone();
    let mut found = Vec::new();
    let mut page_token = Vec::new();
    loop {
        let page = client
            .find_entries(FindEntriesRequest {
                filter: Some(Filter::SessionId(session.clone())),
                limit: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.indexes.len() <= 2);
        found.extend(page.indexes);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(found, (0..size1).collect::<Vec<_>>());
    let by_subject = client
        .find_entries(FindEntriesRequest {
            filter: Some(Filter::Subject(AGENT.into())),
            limit: 1000,
            page_token: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_subject.indexes.len(), all.len());
    let by_time = client
        .find_entries(FindEntriesRequest {
            filter: Some(Filter::TimeRange(TimeRange {
                from_unix_nanos: first[0].time_unix_nanos,
                to_unix_nanos: first.last().unwrap().time_unix_nanos + 1,
            })),
            limit: 1000,
            page_token: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_time.indexes, (0..size1).collect::<Vec<_>>());
    let with_bodies = client
        .get_entries(GetEntriesRequest {
            start: 0,
            count: 1,
            include_bodies: true,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let record = vigil_ledger::LeafRecord::decode(&with_bodies[0].leaf_data).unwrap();
    let salt: [u8; 32] = with_bodies[0].salt.as_slice().try_into().unwrap();
    assert_eq!(
        vigil_ledger::body_commitment(&salt, &with_bodies[0].body),
        record.commitment
    );
    let err = client
        .find_entries(FindEntriesRequest {
            filter: None,
            limit: 1,
            page_token: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Bad requests get clear errors, not a crash.
    let err = client
        .get_consistency_proof(GetConsistencyProofRequest { size1: 0, size2: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(Leaf::EventId("not-a-uuid".into())),
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .get_inclusion_proof(GetInclusionProofRequest {
            leaf: Some(Leaf::Index(u64::MAX)),
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

//! Many workers per projection on the single-node rig: see `common/scale_out.rs`.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_scaled_1_2_3_1_with_a_kill_project_every_event_once() {
    common::scale_out::workers_scaled_1_2_3_1_with_a_kill().await;
}

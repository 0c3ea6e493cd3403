//! Callbacks: one signed delivery per job to a loopback receiver, after retries when the
//! receiver fails at first; redirects are not followed.

use std::time::Duration;

use image_router::queue::callback::{verify, JOB_HEADER};
use image_router::queue::{
    CallbackConfig, CallbackState, JobQueue, NewJob, Worker, SIGNATURE_HEADER,
};
use secrecy::SecretString;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::worker::{builder, req, router, setup, sim};

const SECRET: &str = "callback-secret-for-tests";

fn config() -> CallbackConfig {
    CallbackConfig {
        secret: Some(SecretString::from(SECRET)),
        max_attempts: 4,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
    }
}

/// Runs `w` until every job in `q` has a final callback state.
async fn run_until_callbacks_end(q: &JobQueue, w: &Worker) {
    let q2 = q.clone();
    let stop = async move {
        loop {
            let jobs = q2.list(None, 1000).await.unwrap();
            let done = jobs.iter().all(|j| {
                j.state.is_final()
                    && matches!(
                        j.callback,
                        CallbackState::Delivered { .. } | CallbackState::Failed { .. }
                    )
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), w.run(stop))
        .await
        .expect("callbacks end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signed_delivery_per_job_after_retries() {
    let sim = sim(6000).await;
    let receiver = MockServer::start().await;
    // The receiver fails its first three deliveries, then accepts.
    Mock::given(method("POST"))
        .and(path("/cb"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/cb"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let s = setup();
    let url = format!("{}/cb", receiver.uri());
    let mut ids = Vec::new();
    for i in 0..6 {
        let job = NewJob::new(req(&format!("p{i}"))).callback_url(url.clone());
        ids.push(s.queue.submit(job).await.unwrap().id);
    }
    let w = builder(&s, router(&sim, 6000))
        .callbacks(config())
        .build()
        .unwrap();
    run_until_callbacks_end(&s.queue, &w).await;

    let got = receiver.received_requests().await.unwrap();
    assert_eq!(got.len(), 6 + 3, "six deliveries and three failed tries");
    let mut delivered_ids = Vec::new();
    for r in &got {
        let sig = r.headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
        assert!(
            verify(SECRET.as_bytes(), &r.body, sig),
            "signed with the secret"
        );
        assert!(!verify(b"other secret", &r.body, sig));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let id = r
            .headers
            .get(JOB_HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(body["id"], serde_json::json!(id));
        assert_eq!(body["state"], "succeeded");
        assert!(body["results"][0]["location"].is_string());
        delivered_ids.push(id);
    }
    let mut tries = 0;
    for id in &ids {
        let j = s.queue.status(id).await.unwrap();
        match j.callback {
            CallbackState::Delivered {
                attempts, status, ..
            } => {
                assert_eq!(status, 200);
                tries += attempts;
            }
            other => panic!("job {id}: {other:?}"),
        }
    }
    assert_eq!(tries, 9, "the delivery state counts every try");
    delivered_ids.sort();
    delivered_ids.dedup();
    assert_eq!(delivered_ids.len(), 6, "every job called back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_tries_run_out() {
    let sim = sim(6000).await;
    let receiver = MockServer::start().await;
    Mock::given(path("/cb"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/elsewhere", receiver.uri())),
        )
        .mount(&receiver)
        .await;
    let s = setup();
    let id = s
        .queue
        .submit(NewJob::new(req("a")).callback_url(format!("{}/cb", receiver.uri())))
        .await
        .unwrap()
        .id;
    let w = builder(&s, router(&sim, 6000))
        .callbacks(config())
        .build()
        .unwrap();
    run_until_callbacks_end(&s.queue, &w).await;
    let got = receiver.received_requests().await.unwrap();
    assert!(got.iter().all(|r| r.url.path() == "/cb"), "never followed");
    assert_eq!(got.len(), 4);
    match s.queue.status(&id).await.unwrap().callback {
        CallbackState::Failed {
            attempts,
            last_error,
        } => {
            assert_eq!(attempts, 4);
            assert!(last_error.contains("302"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
}

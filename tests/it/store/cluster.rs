//! What only a cluster shows: accounts whose hash tags fall in slots served by different
//! nodes each keep their own window on their own node, and both work through one factory
//! (one cluster connection), with the router-wide budgets on a third tag.

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::*;
use crate::support::redis::{Plain, Server};

/// `CLUSTER SLOTS`: (first slot, last slot, "host:port" of the primary) per range.
async fn slot_owners(c: &mut Plain) -> Vec<(i64, i64, String)> {
    let v: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(c)
        .await
        .unwrap();
    let Value::Array(ranges) = v else {
        panic!("CLUSTER SLOTS answered {v:?}")
    };
    ranges
        .into_iter()
        .map(|r| {
            let Value::Array(items) = r else {
                panic!("range {r:?}")
            };
            let int = |v: &Value| match v {
                Value::Int(i) => *i,
                other => panic!("{other:?}"),
            };
            let Value::Array(primary) = &items[2] else {
                panic!("primary {:?}", items[2])
            };
            let host = match &primary[0] {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("{other:?}"),
            };
            (
                int(&items[0]),
                int(&items[1]),
                format!("{host}:{}", int(&primary[1])),
            )
        })
        .collect()
}

async fn keyslot(c: &mut Plain, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(c)
        .await
        .unwrap()
}

fn owner(owners: &[(i64, i64, String)], slot: i64) -> String {
    owners
        .iter()
        .find(|(a, b, _)| (*a..=*b).contains(&slot))
        .map(|(_, _, n)| n.clone())
        .unwrap_or_else(|| panic!("slot {slot} is not served"))
}

/// A plain connection to one node, with cluster routing off: it sees only that node's keys.
async fn node(addr: &str) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys_on(addr: &str, pattern: &str) -> Vec<String> {
    let mut c = node(addr).await;
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn accounts_on_different_nodes_each_keep_their_window_on_their_own_node() {
    let test = "accounts_on_different_nodes_each_keep_their_window_on_their_own_node";
    let Some(b) = Bench::on(Server::Cluster, test) else {
        return;
    };
    let mut c = b.conn().await;
    let owners = slot_owners(&mut c).await;
    let nodes: std::collections::BTreeSet<&String> = owners.iter().map(|(_, _, n)| n).collect();
    assert_eq!(
        nodes.len(),
        3,
        "three primaries serve the slots: {owners:?}"
    );

    // Two account names whose tags hash to slots that different nodes own.
    let tag = |account: &str| format!("{{{}:{account}}}", b.prefix);
    let first = "org-0".to_string();
    let first_slot = keyslot(&mut c, &tag(&first)).await;
    let first_node = owner(&owners, first_slot);
    let mut second = None;
    for i in 1..64 {
        let account = format!("org-{i}");
        let slot = keyslot(&mut c, &tag(&account)).await;
        if owner(&owners, slot) != first_node {
            second = Some((account, slot));
            break;
        }
    }
    let (second, second_slot) = second.expect("an account on another node within 64 names");
    let second_node = owner(&owners, second_slot);
    assert_ne!(first_slot, second_slot);
    assert_ne!(first_node, second_node);

    // Both accounts through one factory (one cluster connection), two instances each, with
    // a router-wide budget (its own tag, its own slot) that every admission reserves on.
    let router_budgets = [Budget::new(100.0, image_router::budget::BudgetPeriod::Day).unwrap()];
    let other = b.factory().router_clock();
    for account in [&first, &second] {
        let one = b.store_with(
            &b.factory,
            "p1",
            account,
            limits(Some(3), None, None),
            &[],
            &router_budgets,
        );
        let two = b.store_with(
            &other,
            "p2",
            account,
            limits(Some(3), None, None),
            &[],
            &router_budgets,
        );
        answered(&one, 1, 1).await.unwrap();
        answered(&two, 1, 1).await.unwrap();
        answered(&one, 1, 1).await.unwrap();
        match admit(&two, 1, 1).await {
            Err(Refusal::RateLimit(_)) => {}
            other => panic!("{account}: the shared 3 RPM are used, got {other:?}"),
        }
    }

    // Each account's keys are on the node owning its slot, and only there.
    for (account, home, away) in [
        (&first, &first_node, &second_node),
        (&second, &second_node, &first_node),
    ] {
        let pattern = format!("{}*", tag(account).replace('{', "\\{").replace('}', "\\}"));
        let here = keys_on(home, &pattern).await;
        assert!(
            here.iter().any(|k| k.contains(":w:")),
            "{account}'s window is on {home}: {here:?}"
        );
        assert!(keys_on(away, &pattern).await.is_empty());
    }
    // And every key the test wrote is under one of the three tags.
    let keys = b.keys().await;
    let router = tag("router");
    for k in &keys {
        assert!(
            k.starts_with(&tag(&first)) || k.starts_with(&tag(&second)) || k.starts_with(&router),
            "{k}"
        );
    }
}

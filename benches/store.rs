//! Criterion benches of the store and of password checks: the friend check and the
//! login lookup (every send and every login pays them), message inserts one per
//! transaction and 100 per transaction (group commit), and argon2id verify.

use std::hint::black_box;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use store::{NewMessage, NewUser, Store, StoreOptions, Synchronous};

fn fresh_store(sync: Synchronous) -> (std::path::PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("imd-bench-{}-{sync:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let opts = StoreOptions { synchronous: sync, ..StoreOptions::default() };
    let mut store = Store::open(&dir.join("bench.sqlite3"), &opts).expect("store");
    for i in 0..1000 {
        let user = NewUser {
            id: format!("{i:032x}"),
            account: format!("user{i}"),
            password_hash: "x".into(),
            name: format!("User {i}"),
            mail: "m@example.com".into(),
            ..NewUser::default()
        };
        store.create_user(&user).expect("user");
    }
    for i in (0..1000).step_by(2) {
        store
            .make_friends(&format!("{i:032x}"), "a", &format!("{:032x}", i + 1), "b")
            .expect("friends");
    }
    (dir, store)
}

fn store_ops(c: &mut Criterion) {
    let (dir, mut store) = fresh_store(Synchronous::Normal);
    let (a, b) = (format!("{:032x}", 10), format!("{:032x}", 11));
    let mut g = c.benchmark_group("store");
    g.bench_function("friend_check", |bench| {
        bench.iter(|| store.are_friends(black_box(&a), &b).expect("check"))
    });
    g.bench_function("login_lookup", |bench| {
        bench.iter(|| store.user_by_account(black_box("USER500")).expect("lookup"))
    });
    g.bench_function("message_insert_1_per_tx", |bench| {
        bench.iter(|| store.store_message(&a, &b, "1", "How are you?", 1).expect("insert"))
    });
    let batch: Vec<NewMessage<'_>> = (0..100)
        .map(|_| NewMessage {
            to_id: &a,
            from_id: &b,
            dialogue_id: "1",
            payload: "How are you?",
            ts_ms: 1,
        })
        .collect();
    g.throughput(Throughput::Elements(100));
    g.bench_function("message_insert_100_per_tx", |bench| {
        bench.iter(|| store.store_messages(&batch).expect("batch"))
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

fn argon2_verify(c: &mut Criterion) {
    let params = Params::new(19456, 2, 1, None).expect("OWASP parameters");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"bench-salt-16byt").expect("salt");
    let hash = argon.hash_password(b"correct horse", &salt).expect("hash").to_string();
    let parsed = PasswordHash::new(&hash).expect("phc");
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    g.bench_function("argon2id_verify_19456_2_1", |b| {
        b.iter(|| argon.verify_password(black_box(b"correct horse"), &parsed).is_ok())
    });
    g.finish();
}

criterion_group!(benches, store_ops, argon2_verify);
criterion_main!(benches);

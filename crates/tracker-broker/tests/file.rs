//! The file broker: Rasa's JSON lines.

mod common;

use serde_json::json;

#[tokio::test]
async fn lines_are_rasas_bodies_and_reopening_appends() {
    let directory = std::env::temp_dir().join(common::unique("tracker_broker_file"));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let path = directory.join("rasa_event.log");
    let section = json!({"type": "file", "path": path.to_str().expect("UTF-8")});
    let goldens = common::golden();
    let messages: Vec<_> = goldens.iter().map(|g| g.message.clone()).collect();

    let broker = tracker_broker::connect(common::section(section.clone()))
        .await
        .expect("opens");
    for batch in messages.chunks(11) {
        broker.publish(batch).await.expect("written");
    }
    drop(broker);
    let broker = tracker_broker::connect(common::section(section))
        .await
        .expect("reopens");
    broker.publish(&messages[..1]).await.expect("appended");

    let text = std::fs::read_to_string(&path).expect("read");
    let mut expected: String = goldens.iter().map(|g| format!("{}\n", g.body)).collect();
    expected.push_str(&format!("{}\n", goldens[0].body));
    assert_eq!(text, expected);
    std::fs::remove_dir_all(&directory).expect("cleanup");
}

//! A paused tokio clock drives the scenario.
use super::*;

/// Under `tokio::time::pause()` the scenario follows the paused clock: a 10-minute stack
/// completes after 10 virtual minutes of polling, in no real time.
#[tokio::test(start_paused = true)]
async fn paused_clock_drives_the_scenario() {
    let fake = FakeAws::start().await;
    fake.script_next(Op::Create, StackScript::create_success("any", RESOURCES, &[120.0]));
    let cfn = cfn_client(&fake).await;
    let real = std::time::Instant::now();
    cfn.create_stack()
        .stack_name("paused")
        .template_body("{}")
        .send()
        .await
        .expect("create");
    let mut polls = 0;
    loop {
        let out = cfn
            .describe_stacks()
            .stack_name("paused")
            .send()
            .await
            .expect("describe");
        polls += 1;
        if out.stacks()[0].stack_status() == Some(&StackStatus::CreateComplete) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!((120..=130).contains(&polls), "{polls}");
    assert!(real.elapsed() < Duration::from_secs(2));
}

//! The fused AdamW update against candle's own AdamW.

use candle::Var;
use lit_testutil::{assert_tensor_close as close, random_tensor as random};

#[test]
fn fused_adamw_matches_candles_adamw() {
    // 70,001 elements: above the size where the update runs in parallel chunks, with a remainder.
    use candle_nn::Optimizer as _;
    use lit_optim::{Adam, AdamConfig, Optimizer};
    let (lr, wd) = (0.01, 0.1);
    let start = random(&[7, 10_001], 61);
    let (ours, theirs) = (
        Var::from_tensor(&start).unwrap(),
        Var::from_tensor(&start).unwrap(),
    );
    let mut lit_opt = Adam::new(
        vec![("p".into(), ours.clone())],
        AdamConfig {
            lr,
            weight_decay: wd,
            decoupled_weight_decay: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut candle_opt = candle_nn::AdamW::new(
        vec![theirs.clone()],
        candle_nn::ParamsAdamW {
            lr,
            weight_decay: wd,
            ..Default::default()
        },
    )
    .unwrap();
    for step in 0..5 {
        // The gradient of sum(p * r) is r: a fresh random gradient each step.
        let r = random(&[7, 10_001], 70 + step);
        let loss = |v: &Var| (v.as_tensor() * &r).unwrap().sum_all().unwrap();
        lit_opt.step(&loss(&ours).backward().unwrap()).unwrap();
        candle_opt.step(&loss(&theirs).backward().unwrap()).unwrap();
    }
    close(
        ours.as_tensor(),
        theirs.as_tensor(),
        "parameters after 5 AdamW steps",
    );
}

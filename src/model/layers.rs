//! Layer constructors with the reference's initialization (SPEC §3): Kaiming-normal (fan-in, ReLU gain)
//! for conv and linear weights, PyTorch's default uniform(±1/sqrt(fan_in)) for biases, BN weight 1 and
//! bias 0, eps 1e-5, momentum 0.1. Names follow PyTorch (`weight`, `bias`, `running_mean`, ...).
use tch::nn::{self, init::DEFAULT_KAIMING_NORMAL, Init};

pub fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> nn::Conv2D {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    nn::conv2d(
        p,
        cin,
        cout,
        k,
        nn::ConvConfig { stride, padding, bias, ws_init: DEFAULT_KAIMING_NORMAL, bs_init: Init::Uniform { lo: -bound, up: bound }, ..Default::default() },
    )
}

pub fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

pub fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let bound = 1.0 / (cin as f64).sqrt();
    nn::linear(p, cin, cout, nn::LinearConfig { ws_init: DEFAULT_KAIMING_NORMAL, bs_init: Some(Init::Uniform { lo: -bound, up: bound }), bias: true })
}

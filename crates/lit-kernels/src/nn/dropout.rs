//! Dropout whose masks come from lit's seeded generator.

use candle::{Device, ModuleT, Tensor};
use candle_nn::VarBuilder;
use lit_base::Generator;

/// `nn.Dropout(p)`: in training, each element is zeroed with probability `p` and the others are
/// scaled by `1 / (1 - p)`; in evaluation the layer is the identity.
///
/// candle's own dropout draws from an unseedable generator. This one draws each mask from
/// [`Generator::for_step`], a stream of the run's seed, the training step (epoch, batch and
/// process, set by lit's trainer), the layer's name and its place among the step's random draws:
/// the same seed gives the same masks, and a resumed run draws the masks the uninterrupted run
/// drew at the same step.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f64,
    name: String,
}

impl Dropout {
    /// A dropout layer with drop probability `p` in `[0, 1]`, drawing its masks from the stream
    /// named `name` (a name unique in the network, such as its path).
    pub fn new(p: f64, name: impl Into<String>) -> candle::Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            candle::bail!("dropout: probability has to be between 0 and 1, got {p}")
        }
        Ok(Self {
            p,
            name: name.into(),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

/// `nn.Dropout(p)` at `vb`'s path (the layer has no parameters; the path names its masks'
/// stream).
pub fn dropout(p: f64, vb: &VarBuilder) -> candle::Result<Dropout> {
    Dropout::new(p, format!("dropout/{}", vb.prefix()))
}

impl ModuleT for Dropout {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle::Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        if self.p == 1.0 {
            return x.zeros_like();
        }
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let mut g = Generator::for_step(&self.name);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if g.chance(1.0 - self.p) { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu)?
            .to_dtype(x.dtype())?
            .to_device(x.device())?;
        x.mul(&mask)
    }
}

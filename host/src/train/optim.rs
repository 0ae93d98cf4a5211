//! AdamW (Loshchilov & Hutter, ICLR 2019) with its moments exposed for checkpoints.
//!
//! The update is candle-nn's `AdamW` step, op for op, so results match it; candle-nn keeps the
//! moments private, and `--resume` must restore them to continue a run exactly.
use candle_core::{backprop::GradStore, Tensor, Var};
pub use candle_nn::ParamsAdamW;

struct Slot {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

/// AdamW over named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    step: usize,
    params: ParamsAdamW,
}

impl AdamW {
    /// Zero moments for each variable.
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> candle_core::Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
                let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
                Ok(Slot { name, var, m, v })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW { slots, step: 0, params })
    }

    /// Sets the learning rate of the next steps (schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let p = &self.params;
        let scale_m = 1.0 / (1.0 - p.beta1.powi(self.step as i32));
        let scale_v = 1.0 / (1.0 - p.beta2.powi(self.step as i32));
        for s in &self.slots {
            let Some(g) = grads.get(&s.var) else { continue };
            let next_m = ((s.m.as_tensor() * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let next_v = ((s.v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&next_m * scale_m)?;
            let v_hat = (&next_v * scale_v)?;
            let theta = (s.var.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
            let adjusted = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            s.var.set(&(theta - (adjusted * p.lr)?)?)?;
            s.m.set(&next_m)?;
            s.v.set(&next_v)?;
        }
        Ok(())
    }

    /// The moments, named `adamw.m.<var>` and `adamw.v.<var>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| [(format!("adamw.m.{}", s.name), s.m.as_tensor().clone()), (format!("adamw.v.{}", s.name), s.v.as_tensor().clone())])
            .collect()
    }

    /// Restores moments and the step count saved by [`AdamW::state`].
    pub fn load_state(&mut self, tensors: &std::collections::HashMap<String, Tensor>, step: usize) -> Result<(), String> {
        for s in &self.slots {
            for (kind, var) in [("m", &s.m), ("v", &s.v)] {
                let key = format!("adamw.{kind}.{}", s.name);
                let t = tensors.get(&key).ok_or_else(|| format!("optimizer state {key} is missing"))?;
                if t.shape() != var.shape() {
                    return Err(format!("optimizer state {key} has shape {:?}, expected {:?}", t.dims(), var.dims()));
                }
                var.set(&t.to_device(var.device()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

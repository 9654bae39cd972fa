//! netgpt-edge: the edge agent. The telecom tool catalog and its schema
//! validation, the synthetic workload, the domain tokenizer, a small candle
//! transformer that proposes tool calls, its SFT training, and inference with
//! the features the router's scorer reads; and a pretrained GGUF chat model
//! behind the same proposal interface.

pub mod agent;
pub mod catalog;
pub mod constrain;
pub mod gguf;
pub mod model;
pub mod sft;
pub mod stage;
pub mod tokenizer;
pub mod workload;

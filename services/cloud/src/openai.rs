//! A client for any OpenAI-compatible chat-completions endpoint with tools
//! (OpenAI, Azure OpenAI, vLLM, llama.cpp server, Ollama, ...): the request's
//! prompt and the tool catalog go out, one tool call comes back. Timeouts,
//! retries with exponential backoff and jitter on transient failures (connect
//! errors, timeouts, 429, 5xx), and a circuit breaker.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use netgpt_core::records::CloudRequest;
use netgpt_edge::catalog::ToolCatalog;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::breaker::CircuitBreaker;
use crate::{CloudAnswer, CloudBackend, CloudError};

/// `[cloud.openai]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiConfig {
    /// Base URL up to and including the API version, e.g. https://api.openai.com/v1.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key ("" for none).
    pub api_key_env: String,
    /// Per-attempt timeout (ms).
    pub timeout_ms: u64,
    /// Retries after the first attempt, on transient failures only.
    pub max_retries: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failed calls that open the circuit, and how long it stays open (ms).
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    pub system_prompt: String,
}

pub struct OpenAiBackend {
    cfg: OpenAiConfig,
    api_key: Option<String>,
    http: reqwest::Client,
    tools: Value,
    pub breaker: CircuitBreaker,
}

/// What one attempt's failure means for the next.
enum Attempt {
    Transient(String),
    Permanent(CloudError),
}

impl OpenAiBackend {
    pub fn new(cfg: OpenAiConfig) -> anyhow::Result<Self> {
        let api_key = match cfg.api_key_env.as_str() {
            "" => None,
            var => std::env::var(var).ok().filter(|k| !k.is_empty()),
        };
        let http = reqwest::Client::builder().timeout(Duration::from_millis(cfg.timeout_ms)).build()?;
        let breaker = CircuitBreaker::new(cfg.breaker_failures, Duration::from_millis(cfg.breaker_cooldown_ms));
        Ok(Self { tools: tool_specs(ToolCatalog::embedded()), cfg, api_key, http, breaker })
    }

    fn body(&self, prompt: &str) -> Value {
        json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": self.cfg.system_prompt},
                {"role": "user", "content": prompt},
            ],
            "tools": self.tools,
            "tool_choice": "required",
            "temperature": 0,
        })
    }

    async fn attempt(&self, body: &Value) -> Result<CloudAnswer, Attempt> {
        let started = Instant::now();
        let url = format!("{}/chat/completions", self.cfg.base_url.trim_end_matches('/'));
        let mut req = self.http.post(&url).json(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| Attempt::Transient(format!("{url}: {e}")))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Attempt::Transient(format!("{url}: HTTP {status}")));
        }
        let text = resp.text().await.map_err(|e| Attempt::Transient(format!("reading the response: {e}")))?;
        if !status.is_success() {
            return Err(Attempt::Permanent(CloudError::Unavailable { attempts: 1, last: format!("HTTP {status}: {}", text.chars().take(300).collect::<String>()) }));
        }
        let mut answer = parse_completion(&text).map_err(Attempt::Permanent)?;
        answer.latency_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(answer)
    }

    fn backoff(&self, retry: u32) -> Duration {
        let base = self.cfg.backoff_initial_ms.saturating_mul(1u64 << retry.min(16)).min(self.cfg.backoff_max_ms);
        // Full jitter: concurrent callers do not retry in lockstep.
        Duration::from_millis(rand::rng().random_range(base / 2..=base.max(1)))
    }

    pub async fn call(&self, prompt: &str) -> Result<CloudAnswer, CloudError> {
        if !self.breaker.allow() {
            return Err(CloudError::CircuitOpen);
        }
        let body = self.body(prompt);
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..=self.cfg.max_retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            match self.attempt(&body).await {
                Ok(mut a) => {
                    self.breaker.record_success();
                    a.latency_ms = started.elapsed().as_secs_f64() * 1e3;
                    return Ok(a);
                }
                Err(Attempt::Permanent(e)) => {
                    // The endpoint answered: the link is up, the request is the problem.
                    self.breaker.record_success();
                    return Err(e);
                }
                Err(Attempt::Transient(e)) => {
                    tracing::debug!(attempt, error = %e, "cloud attempt failed");
                    last = e;
                }
            }
        }
        self.breaker.record_failure();
        Err(CloudError::Unavailable { attempts: self.cfg.max_retries + 1, last })
    }
}

impl CloudBackend for OpenAiBackend {
    fn name(&self) -> &str {
        &self.cfg.model
    }

    fn answer<'a>(&'a self, request: &'a CloudRequest) -> BoxFuture<'a, Result<CloudAnswer, CloudError>> {
        self.call(&request.proposal.request.prompt).boxed()
    }
}

/// The catalog as OpenAI `tools`: name, description and the argument schema.
pub fn tool_specs(catalog: &ToolCatalog) -> Value {
    Value::Array(
        catalog
            .tools()
            .iter()
            .map(|t| {
                let mut params = t.schema.clone();
                if let Some(o) = params.as_object_mut() {
                    // Keys that are ours or that some servers reject.
                    for k in ["$schema", "$id", "title", "description", "x-netgpt"] {
                        o.remove(k);
                    }
                }
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": params}})
            })
            .collect(),
    )
}

#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    /// A JSON document in a string, per the API.
    arguments: String,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// The first tool call of a chat-completions response, as netgpt's call JSON.
pub fn parse_completion(text: &str) -> Result<CloudAnswer, CloudError> {
    let c: Completion = serde_json::from_str(text).map_err(|e| CloudError::BadAnswer(format!("not a chat completion: {e}")))?;
    let call = c
        .choices
        .first()
        .and_then(|ch| ch.message.tool_calls.first())
        .ok_or_else(|| CloudError::BadAnswer("the completion has no tool call".into()))?;
    let args: Value = serde_json::from_str(&call.function.arguments).map_err(|e| CloudError::BadAnswer(format!("tool arguments are not JSON: {e}")))?;
    let usage = c.usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 });
    Ok(CloudAnswer {
        call_json: json!({"tool": call.function.name, "arguments": args}).to_string(),
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        latency_ms: 0.0,
        model: c.model.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;

    /// A local chat-completions server: the first `fail_first` calls get a 503,
    /// every call waits `delay`, and answers call list_alarms for the site it
    /// finds in the prompt.
    struct Fake {
        calls: AtomicUsize,
        fail_first: usize,
        delay: Duration,
        status: StatusCode,
    }

    async fn completions(State(f): State<Arc<Fake>>, body: String) -> (StatusCode, String) {
        let n = f.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(f.delay).await;
        if n < f.fail_first {
            return (f.status, "{\"error\":\"busy\"}".into());
        }
        let req: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(req["tool_choice"], "required");
        assert!(req["tools"].as_array().is_some_and(|t| t.len() >= 14));
        let prompt = req["messages"][1]["content"].as_str().unwrap_or_default().to_string();
        let site = prompt.split_whitespace().find(|w| w.starts_with('S')).unwrap_or("S000");
        let args = json!({"site_id": site}).to_string();
        let resp = json!({
            "model": "fake-large",
            "choices": [{"message": {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "list_alarms", "arguments": args}}]}}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 18}
        });
        (StatusCode::OK, resp.to_string())
    }

    async fn serve(fake: Fake) -> (String, Arc<Fake>) {
        let fake = Arc::new(fake);
        let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1"), fake)
    }

    fn cfg(base_url: String) -> OpenAiConfig {
        let mut c = crate::CloudConfig::defaults().openai;
        c.base_url = base_url;
        c.api_key_env = String::new();
        c.timeout_ms = 300;
        c.max_retries = 2;
        c.backoff_initial_ms = 5;
        c.backoff_max_ms = 20;
        c.breaker_failures = 2;
        c.breaker_cooldown_ms = 200;
        c
    }

    #[tokio::test]
    async fn answers_with_the_tool_call_and_usage() {
        let (url, fake) = serve(Fake { calls: AtomicUsize::new(0), fail_first: 0, delay: Duration::ZERO, status: StatusCode::OK }).await;
        let b = OpenAiBackend::new(cfg(url)).unwrap();
        let a = b.call("list the alarms at S042").await.unwrap();
        let call: Value = serde_json::from_str(&a.call_json).unwrap();
        assert_eq!(call, json!({"tool": "list_alarms", "arguments": {"site_id": "S042"}}));
        assert_eq!((a.tokens_in, a.tokens_out, a.model.as_str()), (1200, 18, "fake-large"));
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_transient_failures_with_backoff() {
        let (url, fake) = serve(Fake { calls: AtomicUsize::new(0), fail_first: 2, delay: Duration::ZERO, status: StatusCode::SERVICE_UNAVAILABLE }).await;
        let b = OpenAiBackend::new(cfg(url)).unwrap();
        assert!(b.call("alarms at S001").await.is_ok());
        assert_eq!(fake.calls.load(Ordering::SeqCst), 3, "two 503s, then success");
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, fake) = serve(Fake { calls: AtomicUsize::new(0), fail_first: 100, delay: Duration::ZERO, status: StatusCode::BAD_REQUEST }).await;
        let b = OpenAiBackend::new(cfg(url)).unwrap();
        let e = b.call("alarms at S001").await.unwrap_err();
        assert!(matches!(e, CloudError::Unavailable { attempts: 1, .. }), "{e}");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn timeouts_and_outages_open_the_circuit_which_recovers() {
        let (url, fake) = serve(Fake { calls: AtomicUsize::new(0), fail_first: 6, delay: Duration::from_millis(10), status: StatusCode::BAD_GATEWAY }).await;
        let b = OpenAiBackend::new(cfg(url)).unwrap();
        for _ in 0..2 {
            assert!(matches!(b.call("x S001").await, Err(CloudError::Unavailable { attempts: 3, .. })));
        }
        assert_eq!(b.call("x S001").await, Err(CloudError::CircuitOpen), "fails fast while open");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 6);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(b.call("x S001").await.is_ok(), "the half-open trial succeeds and closes the circuit");
        assert!(b.call("x S001").await.is_ok());

        let (slow, _) = serve(Fake { calls: AtomicUsize::new(0), fail_first: 0, delay: Duration::from_secs(2), status: StatusCode::OK }).await;
        let b = OpenAiBackend::new(cfg(slow)).unwrap();
        let started = Instant::now();
        let e = b.call("x S001").await.unwrap_err();
        assert!(e.to_string().contains("3 attempt"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2), "each attempt is cut at the timeout");
    }

    #[test]
    fn malformed_completions_are_clear_errors() {
        for (text, needle) in [
            ("nope", "not a chat completion"),
            (r#"{"choices":[{"message":{"content":"hi"}}]}"#, "no tool call"),
            (r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"x","arguments":"{oops"}}]}}]}"#, "not JSON"),
        ] {
            let e = parse_completion(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}

//! The one web page: pick an agent, send a message, watch the events.
//!
//! Everything agents send is shown as text (`textContent`), and the only
//! link the page follows, an `auth-required` answer's `authorization_url`,
//! opens only when its protocol is `http:` or `https:`: a `javascript:` URL
//! would run in the gateway's origin with the user's session.

use axum::response::Html;

pub(crate) async fn index() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>amesh</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}
 h1{font-size:1.4rem} select,input,button,textarea{font:inherit;padding:.4rem}
 #log{white-space:pre-wrap;background:#f5f5f7;border-radius:6px;padding:1rem;min-height:8rem;font:13px ui-monospace,monospace}
 .row{display:flex;gap:.5rem;margin:.5rem 0} .row>*{flex:1} button{flex:0 0 auto}
 .muted{color:#666}
</style></head><body>
<h1>amesh gateway</h1>
<div class="row" id="login" hidden><input id="token" type="password" placeholder="API token"><button onclick="login()">Log in</button></div>
<p class="muted" id="who"></p>
<div class="row"><select id="agent"></select><button onclick="agents()">Refresh</button></div>
<div class="row"><textarea id="text" rows="3" placeholder='Text, or JSON like {"tool":"time"}'></textarea></div>
<div class="row"><button onclick="send()">Send</button><button onclick="cancelTask()">Cancel</button></div>
<div id="log"></div>
<script>
let current=null;
const log=t=>{document.getElementById('log').textContent+=t+"\n"};
// Agents are not trusted with this page's origin: only http(s) links open
// (the gateway refuses others too), and agent data only ever becomes text.
const httpUrl=u=>{try{const p=new URL(u).protocol;return p==='http:'||p==='https:'}catch(e){return false}};
async function me(){const r=await fetch('/api/v1/auth/me');
 if(r.status===401){document.getElementById('login').hidden=false;return false}
 const j=await r.json();document.getElementById('who').textContent='Signed in as '+j.user.id;return true}
async function login(){const r=await fetch('/api/v1/auth/login',{method:'POST',headers:{'content-type':'application/json'},
 body:JSON.stringify({token:document.getElementById('token').value})});
 if(r.ok){document.getElementById('login').hidden=true;await me();agents()}else log('login failed')}
async function agents(){const r=await fetch('/api/v1/agents');if(!r.ok)return;const j=await r.json();
 const s=document.getElementById('agent');s.replaceChildren();
 for(const a of j.agents){const o=document.createElement('option');o.value=a.name;o.textContent=a.name+(a.description?' — '+a.description:'');s.appendChild(o)}}
async function send(){const raw=document.getElementById('text').value;let body={agent_name:document.getElementById('agent').value};
 try{const d=JSON.parse(raw);if(d&&typeof d==='object'){body.data=d}else{body.text=raw}}catch(e){body.text=raw}
 document.getElementById('log').textContent='';
 const r=await fetch('/api/v1/message:stream',{method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify(body)});
 if(!r.ok){log('error '+r.status+': '+await r.text());return}
 const rd=r.body.getReader();const dec=new TextDecoder();let buf='';
 for(;;){const {value,done}=await rd.read();if(done)break;buf+=dec.decode(value,{stream:true});
  let i;while((i=buf.indexOf("\n\n"))>=0){const chunk=buf.slice(0,i);buf=buf.slice(i+2);
   let ev='message',data='';for(const l of chunk.split("\n")){if(l.startsWith('event:'))ev=l.slice(6).trim();else if(l.startsWith('data:'))data+=l.slice(5).trim()}
   if(!data)continue;const j=JSON.parse(data);if(ev==='submitted')current=j.taskId;
   if(ev==='status'&&j.status&&j.status.state==='auth-required'){const p=(j.status.message||{}).parts||[];
     for(const x of p){const u=x.kind==='data'&&x.data?x.data.authorization_url:undefined;if(u===undefined)continue;
      if(httpUrl(u)){log('Authorization needed: '+u);window.open(u,'_blank','noopener,noreferrer')}else log('Refused an authorization link that is not http(s)')}}
   log(ev+': '+JSON.stringify(j,null,1))}}}
async function cancelTask(){if(!current)return;const r=await fetch('/api/v1/tasks/'+current+':cancel',{method:'POST'});log('cancel: '+r.status)}
me().then(ok=>{if(ok)agents()});
</script></body></html>"#;

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// The script, without the markup and styles around it.
    fn script() -> &'static str {
        let start = PAGE.find("<script>").expect("the page has a script");
        let end = PAGE.rfind("</script>").expect("the script ends");
        &PAGE[start..end]
    }

    #[test]
    fn links_from_agents_open_only_when_their_protocol_is_http_or_https() {
        let js = script();
        assert!(
            js.contains("const httpUrl=u=>{try{const p=new URL(u).protocol;return p==='http:'||p==='https:'}catch(e){return false}};"),
            "the protocol check is missing:\n{js}"
        );
        // The page opens exactly one kind of link, and only behind the check,
        // without giving the opened page a handle on this one.
        assert_eq!(js.matches("window.open(").count(), 1, "{js}");
        assert!(
            js.contains("if(httpUrl(u)){log('Authorization needed: '+u);window.open(u,'_blank','noopener,noreferrer')}"),
            "{js}"
        );
        for sink in ["location=", "location.href", ".href=", "<a "] {
            assert!(
                !js.contains(sink),
                "agent links must not reach {sink}:\n{js}"
            );
        }
    }

    #[test]
    fn agent_data_never_becomes_markup() {
        let js = script();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "{sink} in the page's script:\n{js}");
        }
    }
}

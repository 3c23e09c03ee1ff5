//! The one web page: pick an agent, send a message, watch the events.

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
async function me(){const r=await fetch('/api/v1/auth/me');
 if(r.status===401){document.getElementById('login').hidden=false;return false}
 const j=await r.json();document.getElementById('who').textContent='Signed in as '+j.user.id;return true}
async function login(){const r=await fetch('/api/v1/auth/login',{method:'POST',headers:{'content-type':'application/json'},
 body:JSON.stringify({token:document.getElementById('token').value})});
 if(r.ok){document.getElementById('login').hidden=true;await me();agents()}else log('login failed')}
async function agents(){const r=await fetch('/api/v1/agents');if(!r.ok)return;const j=await r.json();
 const s=document.getElementById('agent');s.innerHTML='';
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
     for(const x of p){if(x.kind==='data'&&x.data&&x.data.authorization_url){log('Authorization needed: '+x.data.authorization_url);window.open(x.data.authorization_url,'_blank')}}}
   log(ev+': '+JSON.stringify(j,null,1))}}}
async function cancelTask(){if(!current)return;const r=await fetch('/api/v1/tasks/'+current+':cancel',{method:'POST'});log('cancel: '+r.status)}
me().then(ok=>{if(ok)agents()});
</script></body></html>"#;

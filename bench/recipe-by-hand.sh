#!/usr/bin/env bash
# The reference recipe's host deployment done by hand, as one shell session on
# a fresh host: what `make bench` times beside the cold converge (bench.py
# recipe_by_hand()). It follows the recipe's steps and files: its venv and
# `pip install ... uwsgi` (uWSGI built from source, pinned here so that a new
# uWSGI release does not move the timing), uwsgi.ini, systemd unit and nginx
# server block (from bench/recipe-nginx.conf). What it changes or adds to
# serve the sample app on this host:
#   - the packages the steps assume, with apt's defaults (recommends on):
#     nginx, python3-venv, the C compiler and Python headers that pip builds
#     uWSGI with, and curl for the last step's check;
#   - `pip install -r requirements.txt uwsgi` where the recipe has
#     `pip install flask uwsgi`: the sample app needs more than Flask;
#   - PostgreSQL with one role and database, and the app's tables, because
#     the sample app keeps its data there; the app's environment file
#     (SECRET_KEY, DATABASE_URL) read by the recipe's unit;
#   - the server block as bench/recipe-nginx.conf has it (its "# adjusted:"
#     lines: ports 8083 and 8444, its own TLS session cache name, and a
#     self-signed certificate where the recipe
#     has Let's Encrypt's), pointed at this socket and at the app's static
#     directory, which is app/static in the sample app;
#   - `nginx -t` and a reload where the recipe has `systemctl start nginx`:
#     Debian's package has already started nginx, so a start would not load
#     the new server block.
# It ends when https://127.0.0.1:8444/health answers 200 through nginx (the
# app reached PostgreSQL), then checks that /api/notes does (its tables exist).
#
# Expects in /root, copied in before the clock starts: the sample app
# (sample_app/) and recipe-nginx.conf.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APP=/var/www/myapp

apt-get update -qq
apt-get install -y -qq nginx python3-venv python3-dev build-essential postgresql curl >/dev/null

# The app's database.
PASSWORD=$(openssl rand -hex 16)
runuser -u postgres -- psql -q -c "CREATE ROLE myapp LOGIN PASSWORD '$PASSWORD'"
runuser -u postgres -- createdb -O myapp myapp

# "Project structure", then "Installing uWSGI".
mkdir -p "$APP"
cp -r /root/sample_app/app /root/sample_app/wsgi.py "$APP"/
python3 -m venv "$APP/venv"
"$APP/venv/bin/pip" install -q -r /root/sample_app/requirements.txt uwsgi==2.0.30

cat > "$APP/env" <<EOF
SECRET_KEY=$(openssl rand -hex 32)
DATABASE_URL=postgresql://myapp:$PASSWORD@127.0.0.1/myapp
EOF
chmod 600 "$APP/env"
# shellcheck source=/dev/null
(set -a; . "$APP/env"; cd "$APP" && venv/bin/flask --app wsgi init-db)

# "uwsgi.ini Configuration", as written (its socket under /var/www/myapp).
cat > "$APP/uwsgi.ini" <<'EOF'
[uwsgi]
module = wsgi:application
master = true
processes = 4
threads = 2
socket = /var/www/myapp/myapp.sock
chmod-socket = 660
vacuum = true
die-on-term = true
harakiri = 60
harakiri-verbose = true
logto = /var/log/uwsgi/myapp.log
log-maxsize = 10485760
log-backupname = /var/log/uwsgi/myapp.log.bak
reload-on-rss = 200
worker-reload-mercy = 60
lazy-apps = true
single-interpreter = true
enable-threads = true
thunder-lock = true
buffer-size = 65535
post-buffering = 65535
stats = /var/www/myapp/uwsgi-stats.sock
EOF

# "/etc/systemd/system/myapp.service", plus the app's environment file.
cat > /etc/systemd/system/myapp.service <<'EOF'
[Unit]
Description=uWSGI instance to serve myapp
After=network.target

[Service]
User=www-data
Group=www-data
WorkingDirectory=/var/www/myapp
Environment="PATH=/var/www/myapp/venv/bin"
EnvironmentFile=/var/www/myapp/env
ExecStart=/var/www/myapp/venv/bin/uwsgi --ini uwsgi.ini
ExecReload=/bin/kill -s HUP $MAINPID
ExecStop=/bin/kill -s TERM $MAINPID
Restart=always
RestartSec=5
KillSignal=SIGQUIT
Type=notify
NotifyAccess=all
RuntimeDirectory=uwsgi
RuntimeDirectoryMode=0755

[Install]
WantedBy=multi-user.target
EOF

# The recipe's server blocks, pointed at this socket and a self-signed
# certificate.
mkdir -p /etc/nginx/tls
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=example.com \
  -keyout /etc/nginx/tls/recipe.selfsigned.key -out /etc/nginx/tls/recipe.selfsigned.crt 2>/dev/null
sed -e 's|unix:/run/uwsgi/recipe/uwsgi.sock|unix:/var/www/myapp/myapp.sock|' \
  -e "s|/srv/flaskapp/current/app/static|$APP/app/static|" \
  /root/recipe-nginx.conf > /etc/nginx/sites-available/myapp
ln -sf /etc/nginx/sites-available/myapp /etc/nginx/sites-enabled/myapp

# "Enable and Start Services".
mkdir -p /var/log/uwsgi
chown www-data:www-data /var/log/uwsgi
chown -R www-data:www-data "$APP"
chmod -R 755 "$APP"
chmod 600 "$APP/env"
systemctl daemon-reload
systemctl enable -q myapp
systemctl start myapp
nginx -t -q
systemctl enable -q nginx
systemctl reload-or-restart nginx

for _ in $(seq 1 100); do
  if [ "$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' https://127.0.0.1:8444/health)" = 200 ]; then
    curl -skf --max-time 5 -o /dev/null https://127.0.0.1:8444/api/notes
    exit 0
  fi
  sleep 0.2
done
echo "https://127.0.0.1:8444/health did not answer 200 within 20 s" >&2
exit 1

"""Open atlas pages in Firefox ESR (through Marionette), from file://, and report whether they get
ready, their error if any, their timings once the maps are shown, a zoom frame's time, the thumbnails drawn on the zoomed map and the
tiles loaded (folder layout); a screenshot of each to /tmp/ffshot_NAME.png.

A manual check, not a test (Playwright drives only its own Firefox build, which cannot be fetched
here). Firefox needs a display with OpenGL for WebGL2: headless it has none here.

    apt-get install -y --no-install-recommends firefox-esr xvfb xauth libgl1-mesa-dri
    python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install marionette_driver
    xvfb-run -a -s "-screen 0 1600x1000x24" /tmp/mvenv/bin/python scripts/firefox_check.py \
        single=file:///abs/atlas.html folder=file:///abs/atlas/index.html
"""
import base64, subprocess, sys, time, os, shutil, tempfile
from marionette_driver.marionette import Marionette
prof = tempfile.mkdtemp()
open(os.path.join(prof, "user.js"), "w").write('user_pref("webgl.force-enabled", true);\nuser_pref("marionette.port", 2828);\n')
proc = subprocess.Popen(["firefox-esr", "--marionette", "--profile", prof, "--window-size=1400,900"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(4)
    m = Marionette(host="127.0.0.1", port=2828)
    m.start_session()
    m.set_window_rect(width=1400, height=900)
    for name, url in [(a.split("=")[0], a.split("=")[1]) for a in sys.argv[1:]]:
        m.navigate(url)
        t0 = time.time(); state = None
        while time.time() - t0 < 60:
            state = m.execute_script("return window.wrappedJSObject.atlas ? [window.wrappedJSObject.atlas.ready, window.wrappedJSObject.atlas.error] : null")
            if state and (state[0] or state[1]):
                break
            time.sleep(0.2)
        print(name, "ready/error:", state, f"{time.time() - t0:.1f} s")
        if state and state[0]:
            drawing = "return window.wrappedJSObject.atlas.drawing ? window.wrappedJSObject.atlas.drawing() : false"
            t0 = time.time()
            while m.execute_script(drawing) and time.time() - t0 < 60:  # the folder page shows its maps once drawn
                time.sleep(0.1)
            print(name, "timings:", m.execute_script("return JSON.stringify(window.wrappedJSObject.atlas.timings)"))
            print(name, "tiles:", m.execute_script("return window.wrappedJSObject.atlas.tiles ? JSON.stringify(window.wrappedJSObject.atlas.tiles()) : 'n/a'"))
            print(name, "zoom frame ms:", m.execute_script("return window.wrappedJSObject.atlas.zoom(0, 8)"))
            time.sleep(2)
            print(name, "thumbnails on map:", m.execute_script("const t = window.wrappedJSObject.atlas.thumbnails(0); return [t.alpha, t.boxes.length]"))
            print(name, "tiles after zoom:", m.execute_script("return window.wrappedJSObject.atlas.tiles ? JSON.stringify(window.wrappedJSObject.atlas.tiles()) : 'n/a'"))
        png = m.screenshot(format="binary")
        open(f"/tmp/ffshot_{name}.png", "wb").write(png)
    m.delete_session()
finally:
    proc.kill(); shutil.rmtree(prof, ignore_errors=True)

import asyncio
from playwright.async_api import async_playwright

async def main():
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"])
        page = await b.new_page(viewport={"width": 1600, "height": 1000})
        await page.goto("http://127.0.0.1:8765/")
        await page.wait_for_timeout(3000)
        await page.mouse.click(800, 500)
        await page.wait_for_timeout(8000)
        await page.screenshot(path="/work/wt/tui/docs/tui-trial/serve.png")
        await b.close()

asyncio.run(main())
